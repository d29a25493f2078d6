"""The dry run before training (dllab.runs.dry_run): a user's network, ``module=`` step or
loss that cannot train fails in one line naming its config key, what came back and what was
expected, exit 2 and no run dir; and a run that passes trains exactly as without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, run_dirs

USER_CODE = """
import torch
from torch import nn

from dllab.training.module import ClassificationModule


class OneOut(nn.Module):
    def __init__(self, input_size):
        super().__init__()
        self.lin = nn.Linear(input_size, 1)

    def forward(self, x):
        return self.lin(x)


class Pair(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.lin = nn.Linear(input_size, output_size)

    def forward(self, x):
        return self.lin(x), x


class NoParams(nn.Module):
    def __init__(self, output_size):
        super().__init__()
        self.k = output_size

    def forward(self, x):
        return x[:, :1].repeat(1, self.k)


class RaisesInInit(nn.Module):
    def __init__(self, input_size):
        super().__init__()
        raise RuntimeError("no weights here")


class RaisesInForward(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.lin = nn.Linear(input_size, output_size)

    def forward(self, x):
        raise RuntimeError("forward is broken")


class NaNs(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.lin = nn.Linear(input_size, output_size)

    def forward(self, x):
        return self.lin(x) * float("nan")


class FloatStep(ClassificationModule):
    def step(self, x, y):
        return 0.5


class NoneStep(ClassificationModule):
    def step(self, x, y):
        pass


class LossOnly(ClassificationModule):
    def step(self, x, y):
        return self.criterion(self(x), y)


class ReadsItsTrainer(ClassificationModule):
    def step(self, x, y):
        loss, output = super().step(x, y)
        return loss * (1 + 0 * self.trainer.current_epoch), output


class PerSample(nn.Module):
    def forward(self, output, target):
        return nn.functional.cross_entropy(output, target, reduction="none")
"""


def line_of(text: str) -> int:
    """The line of nets.py (USER_CODE as written) that holds ``text``."""
    return next(i for i, line in enumerate(USER_CODE.splitlines(), 1) if text in line)


CIRCLE = ["data=circle", "threads=1", "trainer.max_epochs=1", "plots=none"]
SHAPE = "expected one tensor of shape [5, 2] (5 samples x 2 classes of data=circle)"
STEP = "expected (loss, output): the batch's mean loss as a scalar tensor and the output tensor"
BROKEN = [
    (
        ["~model", "+model={_target_: nets.OneOut}"],
        f"model._target_=nets.OneOut: forward returned shape [5, 1]; {SHAPE}",
    ),
    (["~model", "+model={_target_: nets.Pair}"], f"model._target_=nets.Pair: forward returned a tuple of 2; {SHAPE}"),
    (
        ["~model", "+model={_target_: nets.NoParams}"],
        "model._target_=nets.NoParams: has no parameters that require grad; expected at least one",
    ),
    (
        ["~model", "+model={_target_: nets.RaisesInInit}"],
        "model._target_=nets.RaisesInInit: RuntimeError: no weights here (in __init__, {tmp}/nets.py:"
        f"{line_of('no weights here')})",
    ),
    (
        ["~model", "+model={_target_: nets.RaisesInForward}"],
        "model._target_=nets.RaisesInForward: RuntimeError: forward is broken (in forward, {tmp}/nets.py:"
        f"{line_of('forward is broken')})",
    ),
    (
        ["~model", "+model={_target_: nets.NaNs}"],
        "model._target_=nets.NaNs: forward returned NaN or inf on the first training samples; expected finite values",
    ),
    (["module=nets.FloatStep"], f"module=nets.FloatStep: step returned a float (0.5); {STEP}"),
    (["module=nets.NoneStep"], f"module=nets.NoneStep: step returned None; {STEP}"),
    (["module=nets.LossOnly"], f"module=nets.LossOnly: step returned a tensor of shape []; {STEP}"),
    (
        ["~loss", "+loss={_target_: nets.PerSample, name: per_sample}"],
        "loss._target_=nets.PerSample: the loss returned shape [5]; expected a scalar tensor (the batch's mean",
    ),
]


def user_env(tmp_path: Path) -> dict[str, str]:
    """The user's module file importable, beside this checkout's dllab."""
    (tmp_path / "nets.py").write_text(USER_CODE)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(("overrides", "message"), BROKEN, ids=[" ".join(o) for o, _ in BROKEN])
def test_broken_user_code_is_one_line_before_training(overrides: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("dllab-train", *CIRCLE, *overrides, cwd=tmp_path, env=user_env(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: " + message.replace("{tmp}", str(tmp_path))), line
    assert "Traceback" not in result.stderr and "epochs:" not in result.stderr
    assert run_dirs(tmp_path) == [] and not list(tmp_path.glob("logs/**/metrics.json"))


def test_the_dry_run_leaves_the_seeded_run_as_it_was(make_cfg) -> None:  # type: ignore[no-untyped-def]
    """Weights, batch norm's statistics, train mode and torch's random stream after the dry
    run are those before it."""
    from dllab.runs.build import seeded_data_and_module
    from dllab.runs.dry_run import dry_run

    cfg = make_cfg("data=circle", "model.batch_norm=true", "model.dropout=0.3")
    datamodule, module = seeded_data_and_module(cfg)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    modes = [m.training for m in module.modules()]
    rng = torch.get_rng_state()
    dry_run(cfg, datamodule, module)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in module.modules()] == modes
    after = module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_step_that_reads_its_trainer_is_left_to_fit(tmp_path: Path) -> None:
    """No Trainer holds the module in the dry run: a step reading ``self.trainer`` is not
    tried there (nor refused), and the run trains."""
    result = run_cli("dllab-train", *CIRCLE, "module=nets.ReadsItsTrainer", cwd=tmp_path, env=user_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(run_dirs(tmp_path)) == 1
