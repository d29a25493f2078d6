"""Checkpoints written on a time budget (BestCheckpoint, LastCheckpoint) and the TensorBoard
logger (values written in batches, one event per step)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from dllab.data.datamodule import InMemoryDataModule
from dllab.data.playground import Playground
from dllab.data.sklearn_sets import SklearnSet
from dllab.errors import DivergedError
from dllab.training.checkpointing import BestCheckpoint, LastCheckpoint
from dllab.training.loggers import TensorBoardLogger
from dllab.training.module import ClassificationModule
from tests.conftest import bare_trainer, mlp

ADAM = {"_target_": "torch.optim.Adam", "lr": 0.05}


class History(L.Callback):
    """After the checkpoint callbacks of each epoch: val/acc, the weights, and which files exist."""

    def __init__(self, checkpoints: Path) -> None:
        self.checkpoints = checkpoints
        self.acc: list[float] = []
        self.loss: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []
        self.files: list[set[str]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.acc.append(float(trainer.callback_metrics["val/acc"]))
        self.loss.append(float(trainer.callback_metrics["val/loss"]))
        self.weights.append({k: v.clone() for k, v in pl_module.net.state_dict().items()})
        self.files.append({p.name for p in self.checkpoints.glob("*.ckpt")})


def fit(tmp_path: Path, *callbacks: L.Callback, epochs: int = 8) -> tuple[L.Trainer, History]:
    torch.manual_seed(0)
    history = History(tmp_path)
    module = ClassificationModule(4, 3, net=mlp([8]), optimizer=ADAM)
    t = bare_trainer(max_epochs=epochs, enable_checkpointing=True, callbacks=[*callbacks, history])
    t.fit(module, InMemoryDataModule(SklearnSet("iris"), seed=0, batch_size=16))
    return t, history


def best(tmp_path: Path, **kwargs) -> BestCheckpoint:
    options = {"dirpath": tmp_path, "filename": "best", "monitor": "val/acc", "mode": "max"} | kwargs
    return BestCheckpoint(**options)


def test_best_is_kept_in_memory_and_written_at_the_end_with_the_best_epochs_weights(tmp_path: Path) -> None:
    t, history = fit(tmp_path, best(tmp_path, write_every_seconds=60, tie_breaker=None))
    assert history.files == [set()] * 8  # nothing written during training
    saved = torch.load(tmp_path / "best.ckpt", weights_only=True)
    best_epoch = history.acc.index(max(history.acc))  # the first epoch with the best value
    assert saved["epoch"] == best_epoch and best_epoch < 7  # not simply the last state
    for name, value in history.weights[best_epoch].items():
        assert torch.equal(saved["state_dict"][f"net.{name}"], value)
    assert t.checkpoint_callback is not None and t.checkpoint_callback.best_model_score == max(history.acc)


def test_ties_on_the_monitored_value_go_to_the_lowest_validation_loss(tmp_path: Path) -> None:
    t, history = fit(tmp_path, best(tmp_path, write_every_seconds=60), epochs=30)
    top = max(history.acc)
    tied = [epoch for epoch, acc in enumerate(history.acc) if acc == top]
    assert len(tied) > 1  # iris' 15 validation samples: accuracy saturates early
    expected = min(tied, key=lambda epoch: history.loss[epoch])  # the lowest val/loss among them
    assert expected != tied[0]  # so the rule changes which model is tested
    saved = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert saved["epoch"] == expected
    for name, value in history.weights[expected].items():
        assert torch.equal(saved["state_dict"][f"net.{name}"], value)
    callback = t.checkpoint_callback
    assert isinstance(callback, BestCheckpoint)
    assert (callback.best_epoch, callback.best_first_epoch) == (expected + 1, tied[0] + 1)  # epochs done
    assert callback.best_step == (expected + 1) * 7  # 105 samples in batches of 16: 7 steps an epoch
    assert callback.best_tie_value == pytest.approx(history.loss[expected])
    assert float(callback.best_model_score) == top


def test_a_running_best_is_monitored_without_tie_breaking(tmp_path: Path) -> None:
    # val/acc_best never changes after its best epoch: every later epoch would "tie" with it
    assert best(tmp_path, monitor="val/acc_best").tie_breaker is None
    assert best(tmp_path).tie_breaker == "val/loss" and best(tmp_path, monitor="val/loss").tie_breaker is None


def test_top_k_ranks_tied_files_by_the_tie_breaker_in_their_saved_state(tmp_path: Path) -> None:
    t, history = fit(tmp_path, best(tmp_path, filename="{epoch}", save_top_k=3, write_every_seconds=0), epochs=30)
    callback = t.checkpoint_callback
    assert isinstance(callback, BestCheckpoint)
    top = max(history.acc)
    tied = [epoch for epoch, acc in enumerate(history.acc) if acc == top]
    assert callback.best_epoch == min(tied, key=lambda epoch: history.loss[epoch]) + 1
    saved = torch.load(callback.best_model_path, weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("BestCheckpoint"))
    assert state["best_model_path"] == callback.best_model_path  # ranked before its own state was taken


def test_tie_breaking_survives_a_resume_through_the_callback_state(tmp_path: Path) -> None:
    callback = best(tmp_path, write_every_seconds=60)
    fit(tmp_path, callback, epochs=6)
    again = best(tmp_path, write_every_seconds=60)
    again.load_state_dict(callback.state_dict())
    assert again.kept_at == callback.kept_at and again.best_epoch == callback.best_epoch is not None


def test_write_every_seconds_zero_writes_each_new_best_at_once(tmp_path: Path) -> None:
    _, history = fit(tmp_path, best(tmp_path, write_every_seconds=0), epochs=2)
    assert history.files[0] == {"best.ckpt"}


def test_the_best_file_is_written_before_a_last_checkpoint_names_it(tmp_path: Path) -> None:
    _, history = fit(tmp_path, best(tmp_path, write_every_seconds=60), LastCheckpoint(str(tmp_path), every_seconds=0))
    # (History sees each epoch before the checkpoint callbacks do: files of the epoch before)
    assert history.files[0] == set() and all(files == {"best.ckpt", "last.ckpt"} for files in history.files[1:])
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    state = next(v for k, v in last["callbacks"].items() if k.startswith("BestCheckpoint"))
    assert Path(state["best_model_path"]).is_file()


def test_top_k_snapshots_never_written_are_dropped(tmp_path: Path) -> None:
    t, _ = fit(tmp_path, best(tmp_path, filename="{epoch}", save_top_k=2, write_every_seconds=60), epochs=10)
    callback = t.checkpoint_callback
    assert isinstance(callback, BestCheckpoint)
    assert {p.name for p in tmp_path.glob("*.ckpt")} == {Path(p).name for p in callback.best_k_models}
    assert len(callback.best_k_models) == 2


class Explode(L.Callback):
    """A weight turns to inf at the start of epoch 3: the run diverges."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 3:
            with torch.no_grad():
                next(pl_module.parameters())[0, 0] = float("inf")


def test_save_on_exception_keeps_the_best_and_saves_the_diverged_state_beside_it(tmp_path: Path) -> None:
    # ModelCheckpoint's own on_exception would save the diverged (NaN) weights as best.ckpt
    with pytest.raises(DivergedError, match="epoch 3"):
        fit(tmp_path, best(tmp_path, write_every_seconds=60, save_on_exception=True), Explode())
    saved = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert saved["epoch"] < 3 and all(v.isfinite().all() for v in saved["state_dict"].values())
    moment = torch.load(tmp_path / "exception.ckpt", weights_only=True)
    assert moment["epoch"] == 3 and not all(v.isfinite().all() for v in moment["state_dict"].values())


class FailOnTest(L.Callback):
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise RuntimeError("the test stage fails")


def test_save_on_exception_saves_nothing_outside_fit(tmp_path: Path) -> None:
    callback = best(tmp_path, write_every_seconds=60, save_on_exception=True)
    t, _ = fit(tmp_path, callback, epochs=2)
    callback._last_global_step_saved = -1  # steps since the last best: only the stage keeps it from saving
    t.callbacks.append(FailOnTest())
    with pytest.raises(RuntimeError, match="the test stage fails"):
        t.test(t.lightning_module, InMemoryDataModule(SklearnSet("iris"), seed=0, batch_size=16), verbose=False)
    assert {p.name for p in tmp_path.glob("*.ckpt")} == {"best.ckpt"}


def summaries(directory: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, {tag: value}) of each scalar event in the event file, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    (event_file,) = directory.glob("events.out.tfevents.*")
    events = [e for e in EventFileLoader(str(event_file)).Load() if e.HasField("summary")]
    scalars = [e for e in events if all(v.metadata.plugin_data.plugin_name == "scalars" for v in e.summary.value)]
    return [(e.step, {v.tag: make_ndarray(v.tensor).item() for v in e.summary.value}) for e in scalars]


def test_tensorboard_logger_writes_one_event_per_step_when_it_saves(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(str(tmp_path), name="", version="", flush_seconds=3600)
    logger.save()  # the first save is due at once: nothing pending yet
    logger.log_metrics({"train/loss": torch.tensor(0.5), "train/acc": 0.75}, step=3)
    logger.log_metrics({"val/loss": 0.625, "epoch": 3}, step=3)  # same step, new tags: same event
    logger.log_metrics({"train/loss": 0.25}, step=4)
    logger.log_metrics({"train/loss": 0.125}, step=4)  # a tag again: a new event
    logger.save()  # not due for an hour: still nothing on disk
    logger.experiment.flush()
    assert summaries(tmp_path) == []
    logger.finalize("success")
    assert summaries(tmp_path) == [
        (3, {"train/loss": 0.5, "train/acc": 0.75, "val/loss": 0.625}),  # no "epoch": the step is the epoch
        (4, {"train/loss": 0.25}),
        (4, {"train/loss": 0.125}),
    ]
    events = EventAccumulator(str(tmp_path))  # what TensorBoard shows
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(3, 0.5), (4, 0.25), (4, 0.125)]


def test_tensorboard_logger_writes_when_due_or_when_many_values_wait(tmp_path: Path) -> None:
    logger = TensorBoardLogger(str(tmp_path), name="", version="", flush_seconds=0)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()  # due: written and flushed, the run is visible live
    assert summaries(tmp_path) == [(0, {"a": 1.0})]
    logger.log_metrics({"a": 2.0}, step=1)
    logger.log_metrics({"b": 3.0, "c": 4.0}, step=1)
    logger.experiment.add_scalar("direct", 5.0, 2)  # another writer of the same file
    logger.log_metrics({"a": 6.0}, step=3)
    logger.log_metrics({"d": 7.0}, step=4)
    steps = range(5, 5 + TensorBoardLogger.MAX_PENDING - 2)  # with 1, 3 and 4: one more than MAX_PENDING
    for step in steps[:-1]:
        logger.log_metrics({"e": float(step)}, step=step)
    logger.experiment.flush()
    assert len(summaries(tmp_path)) == 2  # step 0 and the direct event; MAX_PENDING values wait
    logger.log_metrics({"e": float(steps[-1])}, step=steps[-1])  # one too many: all written
    logger.experiment.flush()
    assert len(summaries(tmp_path)) == 5 + len(steps)
    logger.finalize("success")
    written = summaries(tmp_path)
    assert written[:5] == [
        (0, {"a": 1.0}),
        (2, {"direct": 5.0}),  # written at once: the logger's values follow when it writes
        (1, {"a": 2.0, "b": 3.0, "c": 4.0}),
        (3, {"a": 6.0}),
        (4, {"d": 7.0}),
    ]
    assert [step for step, _ in written[5:]] == list(steps)


def test_tensorboard_logger_keeps_lightnings_handling_of_dicts(tmp_path: Path) -> None:
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_metrics({"a": 2.0, "pair": {"x": 1.0, "y": 2.0}}, step=1)  # add_scalars: a run per key
    logger.finalize("success")
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 3
    assert summaries(tmp_path) == [(0, {"a": 1.0}), (1, {"a": 2.0})]  # the older value first
    with pytest.raises(ValueError, match="not supported"):
        TensorBoardLogger(str(tmp_path / "x"), name="", version="").log_metrics({"bad": "text"}, step=0)


def test_progress_bar_shows_the_values_of_the_epoch_it_draws(tmp_path: Path, capsys) -> None:
    import re
    import time

    from dllab.training.callbacks import EpochProgressBar

    class SlowLosses(L.Callback):
        """Epochs of about 20 ms, so a 50 ms refresh draws some epochs and skips others."""

        def __init__(self) -> None:
            self.values: list[float] = []

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.values.append(float(trainer.callback_metrics["train/loss"]))
            time.sleep(0.02)

    losses = SlowLosses()
    torch.manual_seed(0)
    module = ClassificationModule(4, 3, net=mlp([8]), optimizer=ADAM)
    bar = EpochProgressBar(refresh_seconds=0.05)
    t = bare_trainer(max_epochs=12, enable_progress_bar=True, callbacks=[losses, bar])
    t.fit(module, InMemoryDataModule(SklearnSet("iris"), seed=0, batch_size=16))
    lines = capsys.readouterr().out.replace("\r", "\n").splitlines()
    drawn = {int(m[1]): m[2] for line in lines if (m := re.search(r" (\d+)/12 .*train_loss=([-\d.e]+)", line))}
    assert 12 in drawn and 2 <= len(drawn) < 12, drawn  # the last epoch, and not every epoch
    for epoch, shown in drawn.items():
        assert shown == f"{losses.values[epoch - 1]:.4g}", (epoch, drawn)


def test_top_k_with_the_version_counter_names_pending_snapshots_apart(tmp_path: Path) -> None:
    def run(callback: L.Callback, where: Path) -> dict[str, float]:
        fit(where, callback, epochs=8)
        return {Path(k).name: float(v) for k, v in callback.best_k_models.items()}  # type: ignore[attr-defined]

    from lightning.pytorch.callbacks import ModelCheckpoint

    options = {"filename": "best", "save_top_k": 2, "enable_version_counter": True}
    lightning_k = run(ModelCheckpoint(dirpath=tmp_path / "a", monitor="val/acc", mode="max", **options), tmp_path / "a")
    ours_k = run(best(tmp_path / "b", write_every_seconds=60, tie_breaker=None, **options), tmp_path / "b")
    assert ours_k == lightning_k and len(ours_k) == 2  # best.ckpt and best-v1.ckpt, the same scores
    assert {p.name for p in (tmp_path / "b").glob("*.ckpt")} == set(ours_k)


def test_last_checkpoint_runs_after_early_stopping_and_the_best_check(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import EarlyStopping

    stopping = EarlyStopping(monitor="train/loss", mode="min", patience=50)
    no_val = {"limit_val_batches": 0}
    torch.manual_seed(0)
    module = ClassificationModule(4, 3, net=mlp([8]), optimizer=ADAM)
    callbacks = [  # the order of conf/callbacks/default.yaml
        best(tmp_path, monitor="train/loss", mode="min", write_every_seconds=60),
        LastCheckpoint(str(tmp_path), every_seconds=0),
        stopping,
    ]
    t = bare_trainer(max_epochs=4, enable_checkpointing=True, callbacks=callbacks, **no_val)
    t.fit(module, InMemoryDataModule(SklearnSet("iris"), seed=0, batch_size=16))
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    states = {k.split("{")[0]: v for k, v in last["callbacks"].items()}
    # the state of the epoch last.ckpt ends, not of the one before
    assert float(states["EarlyStopping"]["best_score"]) == pytest.approx(float(stopping.best_score))
    assert float(states["BestCheckpoint"]["best_model_score"]) == pytest.approx(float(stopping.best_score))
    assert Path(states["BestCheckpoint"]["best_model_path"]).is_file()


def test_sixteen_bit_training_keeps_epoch_sums_in_float32() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=100_000), batch_size=20_000, seed=0)  # 70,000 > 65,504
    torch.manual_seed(0)
    module = ClassificationModule(2, 2, net=mlp([4]), optimizer=ADAM)
    t = bare_trainer(max_epochs=1, precision="16-true", limit_val_batches=0)
    t.fit(module, dm)
    metrics = t.callback_metrics
    for name in ("train/loss", "train/acc", "train/f1"):
        assert metrics[name].dtype == torch.float32 and torch.isfinite(metrics[name]), name
    assert 0.0 < float(metrics["train/loss"]) < 2.0 and 0.0 <= float(metrics["train/acc"]) <= 1.0


def test_a_signal_whose_exception_was_lost_stops_training_at_the_next_hook(tmp_path: Path) -> None:
    import json
    import signal

    from dllab.runs.interrupt import GracefulInterrupt

    interrupt = GracefulInterrupt()
    interrupt._signal = signal.SIGINT  # as if its KeyboardInterrupt had been dropped in a finalizer
    torch.manual_seed(0)
    module = ClassificationModule(4, 3, net=mlp([8]), optimizer=ADAM)
    t = bare_trainer(max_epochs=5, default_root_dir=str(tmp_path), callbacks=[interrupt], num_sanity_val_steps=0)
    with pytest.raises(SystemExit):  # Lightning ends the process on KeyboardInterrupt
        t.fit(module, InMemoryDataModule(SklearnSet("iris"), seed=0, batch_size=16))
    assert t.current_epoch == 0 and t.global_step == 7  # stopped after the first epoch's step
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"
    assert (tmp_path / "checkpoints" / "interrupted.ckpt").is_file()
