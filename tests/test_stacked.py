"""Stacked training (dllab.stacked): each model of a stack ends where its solo ``dllab-train``
run ends: same weights, per-epoch values, best epoch and stop.

The stack's products are batched (``bmm``) where the solo run's are not (``mm``, ``mv``). On
most CPUs the BLAS library rounds both alike and the weights agree bit for bit; on some (an
Intel Xeon with AVX-512 and AMX, whichever ISA it is limited to) they differ in the last bits.
So these tests assert what holds on every CPU: 1e-5 on the weights, 1e-4 on logged values."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dllab.models.mlp import MLP
from dllab.runs.fit import train
from dllab.stacked.group import StackedGroup, build_job, stack_key, unstackable_reason
from dllab.stacked.network import StackedMLP
from tests.conftest import compose_train

SMALL = ["data=digits", "model.hidden_sizes=[32,32]", "trainer.max_epochs=4", "plots=none", "logger=csv", "threads=1"]


def solo_models(seeds: list[int], dropouts: list[float]) -> tuple[list[MLP], list[torch.Generator]]:
    nets, generators = [], []
    for seed, p in zip(seeds, dropouts, strict=True):
        torch.manual_seed(seed)
        nets.append(MLP(64, 10, [32, 16], "tanh", p))
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        generators.append(generator)
    return nets, generators


def test_a_stack_computes_each_models_outputs_and_gradients_bit_for_bit() -> None:
    dropouts = [0.0, 0.2, 0.5]
    nets, generators = solo_models([0, 1, 2], dropouts)
    stack = StackedMLP(nets)
    stack.set_generators(generators)
    xs = [torch.randn(8, 64) for _ in nets]
    ys = [torch.randint(0, 10, (8,)) for _ in nets]
    output = stack(torch.stack(xs))
    assert output.shape == (3, 8, 10)
    F.cross_entropy(output.flatten(0, 1), torch.stack(ys).flatten(), reduction="none").view(3, 8).mean(
        1
    ).sum().backward()
    for i, net in enumerate(nets):
        torch.set_rng_state(solo_models([i], [dropouts[i]])[1][0].get_state())  # the solo run's generator
        solo = net(xs[i])
        F.cross_entropy(solo, ys[i]).backward()
        torch.testing.assert_close(output[i], solo)  # float32's default: rtol 1.3e-6, atol 1e-5
        for mine, stacked in zip(net.parameters(), stack.ordered_parameters(), strict=True):
            torch.testing.assert_close(stacked.grad[i], mine.grad)
        assert list(stack.model_state_dict(i)) == list(net.state_dict())
    assert not torch.equal(output[0], output[1])


def test_networks_that_cannot_stack_are_refused() -> None:
    lone = MLP(4, 2, [])  # no hidden layer: one Linear, stacked all the same
    assert StackedMLP([lone, lone])(torch.zeros(2, 3, 4)).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="batch_norm"):
        StackedMLP([MLP(4, 2, [8], batch_norm=True)])
    with pytest.raises(ValueError, match="one shape and activation"):
        StackedMLP([MLP(4, 2, [8]), MLP(4, 2, [8], activation="tanh")])
    with pytest.raises(ValueError, match=r"only dllab\.models\.mlp\.MLP"):
        StackedMLP([torch.nn.Linear(4, 2)])


def test_jobs_group_by_everything_but_the_stacked_keys(tmp_path: Path) -> None:
    def key(*overrides: str) -> str:
        return stack_key(compose_train([*SMALL, *overrides], tmp_path / "run"))

    assert key("seed=1", "optimizer.lr=0.1") == key("seed=2", "optimizer.lr=0.01")
    assert key("model.dropout=0.1") == key("model.dropout=0.3")
    assert key("model.activation=tanh") != key("model.activation=relu")
    assert key("data.batch_size=16") != key("data.batch_size=32")
    assert key("optimizer=sgd") != key("optimizer=adam")
    # pictures drawn during fit need their epochs' weights: other picture settings or loggers stack apart
    assert key("plots=default", "plots.every_n_epochs=2") != key("plots=default", "plots.every_n_epochs=5")
    assert key("logger=tensorboard") != key()  # SMALL logs to CSV


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["scheduler=step"], "a scheduler"),
        (["trainer.gradient_clip_val=1.0"], "trainer.gradient_clip_val"),
        (["augmentation=light"], "augmentation=light"),  # the stack's loop would leave it out
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0"),
        (["+trainer.min_epochs=3"], "trainer.min_epochs"),
        (["callbacks.model_checkpoint.save_top_k=3"], "callbacks.model_checkpoint.save_top_k"),
        (["trainer.devices=2"], "trainer.devices=2 (several processes)"),
        # a callback of one's own under a key the stack knows: by class, so it is not dropped
        (
            ["callbacks.progress_bar._target_=lightning.pytorch.callbacks.TQDMProgressBar"],
            "callbacks.progress_bar._target_=lightning.pytorch.callbacks.TQDMProgressBar",
        ),
        (["+callbacks.mine._target_=my.Callback"], "callbacks.mine._target_=my.Callback"),
    ],
)
def test_a_job_that_cannot_stack_says_why(overrides: list[str], reason: str, tmp_path: Path) -> None:
    assert unstackable_reason(compose_train([*SMALL, *overrides], tmp_path / "run")) == f"{reason} does not stack"


def test_the_default_job_stacks(tmp_path: Path) -> None:
    assert unstackable_reason(compose_train(SMALL, tmp_path / "run")) is None


def solo_history(run_dir: Path) -> list[dict[str, float]]:
    """Per epoch, the train and val values the solo run's CSV logger got."""
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    epochs: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {k: float(v) for k, v in row.items() if v not in ("", None) and k.startswith(("train/", "val/"))}
        if values:
            epochs.setdefault(int(row["step"]), {}).update(values)
    return [epochs[k] for k in sorted(epochs)]


CASES = {
    "sgd": ["optimizer=sgd", "optimizer.momentum=0.9"],
    "sgd_accumulate": [
        "optimizer=sgd",
        "optimizer.nesterov=true",
        "optimizer.momentum=0.5",
        "trainer.accumulate_grad_batches=3",
    ],
    "adam": ["optimizer=adam", "optimizer.weight_decay=0.01", "model.dropout=0.2"],
    "adam_accumulate": ["trainer.accumulate_grad_batches=3", "loss=cross_entropy", "loss.label_smoothing=0.1"],
    "adagrad": [
        "optimizer=adagrad",
        "callbacks.early_stopping.enabled=true",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=0.5",
    ],
    # regression, RMSprop, a monitor that is its own tie-breaker (none then)
    "rmsprop_regression": ["data=diabetes", "optimizer=rmsprop", "optimizer.momentum=0.5", "optimized_metric=val/loss"],
    "nadam_accumulate": ["optimizer=nadam", "optimizer.weight_decay=0.01", "trainer.accumulate_grad_batches=2"],
    "adagrad_accumulate": [
        "optimizer=adagrad",
        "trainer.accumulate_grad_batches=3",
        "data.batch_size=20",
        "loss=hinge",
    ],
}
# per model: its own seed and learning rate
MODELS = [["seed=1", "optimizer.lr=0.01"], ["seed=2", "optimizer.lr=0.05"], ["seed=1", "optimizer.lr=0.003"]]


@pytest.mark.parametrize("case", list(CASES))
def test_each_model_of_a_stack_ends_as_its_solo_run(case: str, tmp_path: Path) -> None:
    """Weights within 1e-5 (bit for bit on most CPUs: see the module's docstring), per-epoch
    values and the best epoch as the solo run's loggers and metrics.json have them (1e-4)."""
    configs = [compose_train([*SMALL, *CASES[case], *m], tmp_path / f"solo{i}") for i, m in enumerate(MODELS)]
    assert len({stack_key(cfg) for cfg in configs}) == 1 and unstackable_reason(configs[0]) is None
    group = StackedGroup([build_job(cfg.copy()) for cfg in configs])
    results = group.fit()
    for cfg, result in zip(configs, results, strict=True):
        solo = train(cfg)
        run_dir = Path(cfg.paths.output_dir)
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert result.final is not None
        for key, value in result.final.net_state.items():
            torch.testing.assert_close(value, last["state_dict"][f"net.{key}"], rtol=0, atol=1e-5, msg=key)
        assert result.status == solo["status"] and result.epochs == solo["epochs"] == last["epoch"]
        assert result.steps == solo["global_step"]
        history = solo_history(run_dir)
        assert len(history) == len(result.history)
        for theirs, mine in zip(history, result.history, strict=True):
            assert set(mine) <= set(theirs)
            for key, value in mine.items():
                assert value == pytest.approx(theirs[key], abs=1e-4), key
        assert result.best is not None and result.best.epoch == solo["best_epoch"]
        assert result.best.first_epoch == solo["best_first_epoch"]
        best = torch.load(solo["best_checkpoint"], weights_only=True)
        for key, value in result.best.net_state.items():
            torch.testing.assert_close(value, best["state_dict"][f"net.{key}"], rtol=0, atol=1e-5, msg=key)
    if case == "adagrad":  # no gain of 0.5 in val/acc after the first epoch: each stops after 2
        assert all(r.epochs == 2 and "did not improve" in str(r.stop_reason) for r in results)


def test_max_stack_splits_a_group_and_a_lone_job_runs_alone() -> None:
    from dllab.launchers.stacked import Prepared, stacks

    keys = ["a", "a", "b", "a", "a", "a", None]  # None: could not stack (its reason is kept)
    prepared = [Prepared(job=object(), key=k) if k else Prepared(reason="a scheduler") for k in keys]
    chunks, alone = stacks(prepared, max_stack=2)
    assert chunks == [[0, 1], [3, 4]] and alone == [2, 5, 6]
    assert prepared[2].reason == prepared[5].reason == "no other job of the sweep stacks with it"
    assert prepared[6].reason == "a scheduler"
    assert stacks(prepared, max_stack=64)[0] == [[0, 1, 3, 4, 5]]
