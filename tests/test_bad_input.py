"""Bad input: one clear line naming the field, the value and what is allowed, a non-zero
exit, no traceback, and no run dir left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, run_dirs

BAD_INPUTS = [
    (["model.activation=swish"], "model.activation='swish': unknown; choose one of relu, sigmoid, tanh"),
    (["loss.name=focal"], "loss.name='focal': unknown loss; choose one of auto, cross_entropy, hinge"),
    (["loss=hinge", "data=diabetes"], "loss=hinge does not fit data=diabetes, a regression task; valid"),
    (["loss=l1"], "loss=l1 does not fit data=digits, a classification task; valid for classification"),
    (["data.name=mnist2"], "data.name='mnist2': unknown dataset; choose one of circle, xor"),
    (["model.hidden_sizes=[64,0]"], "model.hidden_sizes=[64, 0]: must be a list of positive integers"),
    (["data=circle", "data.n_samples=-5"], "data.n_samples=-5: must be an integer >= 10"),
    (["data.batch_size=0"], "data.batch_size=0: must be a positive integer"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a positive number"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be a positive number"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5: must be a fraction in (0, 1)"),
    (
        ["data.val_fraction=0.5", "data.test_fraction=0.5"],
        "data.val_fraction + data.test_fraction = 1: leaves no",
    ),
    (["data=circle", "data.noise=0.9"], "data.noise=0.9: must be a number in [0, 0.5]"),
    (["data=circle", "data.features=[x1,x3]"], "data.features='x3': unknown feature; choose from x1, x2"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': must be an integer >= -1"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0: must be a positive integer"),
    (["trainer=gpu"], "trainer.accelerator=gpu: no CUDA GPU on this machine; use trainer=cpu"),
    (["trainer=mps"], "trainer.accelerator=mps: Apple MPS needs a Mac with Apple silicon"),
    (
        ["optimized_metric=val/auc"],
        "optimized_metric=val/auc: not logged for this task; choose one of val/acc",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(overrides: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("dllab-train", *overrides, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip().removeprefix('error: ')}"]
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert run_dirs(tmp_path) == []  # nothing trained, nothing left


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=lbfgs"], "Available options in 'optimizer':\n\tadagrad\n\tadam"),
        (["data=mnist2"], "Available options in 'data':"),
        (["model.activaton=relu"], "Could not override 'model.activaton'"),
    ],
)
def test_unknown_names_and_keys_list_the_choices(overrides: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("dllab-train", *overrides, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and run_dirs(tmp_path) == []


def test_verbose_errors_show_the_traceback(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "optimizer.lr=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_eval_of_a_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    result = run_cli("dllab-eval", "ckpt_path=missing.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "error: ckpt_path=missing.ckpt: no such file" in result.stderr
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("data: {}\n")
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("dllab-eval", f"ckpt_path={run_dir}/checkpoints/best.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "cannot read the checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
