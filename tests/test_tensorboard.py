"""What TensorBoard shows of a run: the Custom Scalars layout (train and val of each metric on
one chart), the HParams experiment (lr, optimizer and the swept keys first, each once), the
scalars (no ``epoch`` card) and the pictures' titles (the run's key hyperparameters)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from dllab.pictures.callbacks import DecisionBoundary
from dllab.training import loggers
from dllab.training.loggers import hparam_columns, hparams_summaries, run_title, scalars_layout

HPARAMS = {  # short_hparams | swept_hparams of a job of `-m model.activation=relu,tanh data.noise=0.1,0.2`
    "data": "circle",
    "model": "mlp",
    "hidden_sizes": "[8]",
    "activation": "tanh",
    "loss": "cross_entropy",
    "optimizer": "sgd",
    "lr": 0.03,
    "batch_size": 10,
    "accumulate_grad_batches": 1,
    "seed": 42,
    "model.activation": "tanh",
    "data.noise": 0.2,
    "trainer.max_epochs": 2,
}
SWEPT = ["model.activation", "data.noise"]


def charts(layout: layout_pb2.Layout) -> dict[str, list[str]]:
    return {c.title: list(c.multiline.tag) for category in layout.category for c in category.chart}


def plugin_data(summary: Summary) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(summary.value[0].metadata.plugin_data.content)


def test_layout_puts_train_and_val_of_each_metric_on_one_chart() -> None:
    layout = scalars_layout(["lr-SGD", "train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/acc"])
    assert layout is not None
    found = charts(layout)
    assert list(found) == ["loss (x: epochs done)", "acc (x: epochs done)"]  # one chart per metric, the x axis said
    for title, (pattern,) in found.items():
        name = title.split(" ")[0]
        matched = [t for t in ("train/" + name, "val/" + name, "val/acc_best", "test/" + name) if re.match(pattern, t)]
        assert matched[:2] == [f"train/{name}", f"val/{name}"] and f"test/{name}" not in matched
    assert "epoch" in layout.category[0].title
    assert scalars_layout(["lr-SGD", "epoch"]) is None  # nothing per stage yet: no layout


def test_hparams_experiment_shows_lr_optimizer_and_swept_keys_once() -> None:
    summaries = hparams_summaries(HPARAMS, ["test/loss", "test/acc", "val/acc_best", "test/f1"], SWEPT)
    experiment = plugin_data(summaries[0]).experiment
    names = [h.name for h in experiment.hparam_infos]
    assert names[:2] == ["lr", "optimizer"]
    assert set(names) == {"lr", "optimizer", "activation", "data.noise"}  # the swept keys, each once
    assert "model.activation" not in names
    assert all(h.differs for h in experiment.hparam_infos)  # what TensorBoard shows first
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc_best", "test/acc", "test/f1", "test/loss"]
    start = plugin_data(summaries[1]).session_start_info
    assert set(start.hparams) == set(HPARAMS)  # the session keeps every key
    assert start.hparams["lr"].number_value == pytest.approx(0.03)
    assert start.hparams["activation"].string_value == "tanh"

    columns, _ = hparam_columns(HPARAMS, SWEPT)
    assert list(columns)[:5] == ["lr", "optimizer", "batch_size", "activation", "data.noise"]
    assert "model.activation" not in columns and "data" in columns and "seed" in columns
    # a swept key whose short name means something else is kept under its own name
    other = hparam_columns({**HPARAMS, "scheduler.lr": 0.5}, ["scheduler.lr"])[0]
    assert other["scheduler.lr"] == 0.5 and other["lr"] == 0.03
    # a single run (nothing swept) still shows lr and optimizer, topped up with batch_size
    assert hparam_columns(HPARAMS)[1] == ["lr", "optimizer", "batch_size"]


def test_run_title_names_the_swept_values() -> None:
    assert run_title(HPARAMS, SWEPT) == "circle · tanh · noise 0.2 · sgd lr 0.03"
    assert run_title(HPARAMS, [], first="y = sin(x)") == "y = sin(x) · tanh · sgd lr 0.03"


def test_a_run_writes_layout_hparams_and_titled_pictures(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dllab.results import short_hparams
    from dllab.runs.build import build
    from dllab.runs.fit import fit_and_test

    cfg = make_cfg(
        "data=circle",
        "model.hidden_sizes=[8]",
        "model.activation=tanh",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "trainer.max_epochs=2",
        "plots.confusion_matrix=false",
        "logger=tensorboard",
        "threads=1",
    )
    run = build(cfg)
    result = fit_and_test(run)
    # what train.record logs, as in a job of a sweep over model.activation
    monkeypatch.setattr(loggers, "job_swept_keys", lambda: ["model.activation"])
    hparams = short_hparams(run.cfg, run.module.loss_name) | {"model.activation": "tanh"}
    loggers.log_run_hparams(run.trainer, hparams, {**result["test"], **result["best_val"]})

    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert "epoch" not in tags["scalars"] and {"train/loss", "val/loss", "test/acc"} <= set(tags["scalars"])
    assert len(events.Scalars("test/acc")) == 1  # the test values are not logged a second time

    (layout_event,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    assert set(charts(layout)) == {"loss (x: epochs done)", "acc (x: epochs done)", "f1 (x: epochs done)"}

    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [h.name for h in experiment.hparam_infos] == ["lr", "optimizer", "activation"]
    assert [m.name.tag for m in experiment.metric_infos][:2] == ["val/acc_best", "test/acc"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.activation"].string_value == "tanh"

    (boundary,) = [p for p in run.plotters if isinstance(p, DecisionBoundary)]
    title = boundary.draw(run.trainer, run.module, run.datamodule, final=True).axes[0].get_title()
    assert title.startswith("circle · tanh · sgd lr 0.05 · tested (epoch ") and ": acc " in title
