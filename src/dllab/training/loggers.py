"""Loggers: Lightning's TensorBoard logger with scalars kept in memory and written in batches,
the Custom Scalars layout (train and val of each metric on one chart) and the HParams tab.

TensorBoard's x axis: dllab logs train and val values once per epoch at step = epochs done
(1 after the first epoch, as the pictures and ``best_epoch``), not per optimizer update; the
charts of the Custom Scalars tab say so.
"""

from __future__ import annotations

import numbers
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_STRING
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as layout_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch import Tensor

from dllab import compat, overrides

X_AXIS = "x: epochs done"  # what a step is in dllab's scalars (not an optimizer update)
STAGES = ("train", "val")  # the per-epoch stages; test is one value after fit
# Lightning adds "epoch" to what self.log logs (here only the test values: one dot at the
# end); the step already is the epoch, so dllab's TensorBoard logger leaves it out.
DROPPED_TAGS = frozenset({"epoch"})
# TensorBoard 2.21's HParams dashboard shows (ticks) the first 5 hyperparameters of the
# experiment (those marked ``differs`` first, then by name; nothing else orders them) and the
# first 5 metrics; its table gives each a column of at least 10em, so at 1400 px about 5 fit
# beside the query pane and the trial id. The experiment therefore lists only the columns
# that matter (lr, optimizer, the swept keys), topped up to HPARAM_COLUMNS, so that the
# first metrics fit too; every hyperparameter stays in the session's start info.
TABLE_COLUMNS = 5
HPARAM_COLUMNS = TABLE_COLUMNS - 2  # and at least two metric columns beside them
FIRST_HPARAMS = ("lr", "optimizer", "batch_size")  # in the experiment's order, before the swept keys


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, cheaper per epoch.

    Why: torch's ``SummaryWriter`` hands every event to a writer thread, which checksums it in
    pure Python while holding the GIL that the training loop needs between its torch calls; with
    a few events an epoch that is a noticeable share of a small epoch (docs/performance.md).

    So ``log_metrics`` only records the values (a number per tag, the step and the time).
    They become events when the logger saves: Lightning and ``TaskModule.log_epoch`` ask for
    that after every epoch, and this logger does it at most every ``flush_seconds`` and
    always in ``finalize`` (end of fit or test, also after an exception), then flushes the
    file, so TensorBoard sees a run live, ``flush_seconds`` or one epoch behind. Values of one step logged
    one after another (an epoch's train and val values) share one event, as TensorBoard's
    merged summaries do. Prefixed names and dicts of scalars take Lightning's own path.

    It also writes the Custom Scalars layout (:func:`scalars_layout`) with the first train or
    val values, and leaves out Lightning's ``epoch`` scalar (:data:`DROPPED_TAGS`)."""

    MAX_PENDING = 1000  # values of this many calls are written even before flush_seconds

    def __init__(self, *args: Any, flush_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._last_flush = float("-inf")
        self._pending: list[tuple[int | None, float, dict[str, float]]] = []  # step, wall time, values
        self.scalar_tags: set[str] = set()  # every scalar tag logged so far
        self._layout_written = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k not in DROPPED_TAGS}
        if not metrics:
            return
        self.scalar_tags.update(metrics)
        if compat.logger_prefix(self) or not all(isinstance(v, (numbers.Number, Tensor)) for v in metrics.values()):
            self._write_pending()  # the plain scalars of a call with dicts must not pass older values
            self._write_layout(metrics)
            super().log_metrics(metrics, step)  # prefixes and dicts of scalars: Lightning's way
            return
        values = {k: float(v) for k, v in metrics.items()}
        last = self._pending[-1] if self._pending else None
        if last is not None and last[0] == step and last[2].keys().isdisjoint(values):
            last[2].update(values)  # the same step: one event
        else:
            self._pending.append((step, time.time(), values))
        if len(self._pending) > self.MAX_PENDING:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        self._write_layout(tag for _, _, values in self._pending for tag in values)
        writer = compat.tensorboard_file_writer(self)
        for step, wall_time, values in self._pending:
            summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
            writer.add_event(Event(summary=summary), step, wall_time)
        self._pending.clear()

    def _write_layout(self, tags: Iterable[str]) -> None:
        """The Custom Scalars layout, once, as soon as a train or val value arrives
        (TensorBoard reads a run's first layout only)."""
        if self._layout_written:
            return
        layout = scalars_layout(tags)
        if layout is not None:
            compat.tensorboard_file_writer(self).add_summary(layout_summary(layout), 0)
            self._layout_written = True

    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            self._write_pending()
            super().save()
            self._last_flush = now

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._write_pending()
        super().finalize(status)


# --- Custom Scalars: train and val of a metric on one chart ------------------------------


def scalars_layout(tags: Iterable[str]) -> layout_pb2.Layout | None:
    """One chart per metric that ``tags`` log for train or val (``train/loss``, ``val/acc``,
    ...), with its train and val curves and val's running best (``val/acc_best``); charts
    match tags by regular expression, so a stage that arrives later (val) joins its chart.
    None when no tag is a train or val value."""
    names: list[str] = []
    for tag in tags:
        stage, sep, name = tag.partition("/")
        name = name.removesuffix("_best")
        if sep and stage in STAGES and name and name not in names:
            names.append(name)
    if not names:
        return None
    stages = "|".join(STAGES)
    charts = [
        layout_pb2.Chart(
            title=f"{name} ({X_AXIS})",
            multiline=layout_pb2.MultilineChartContent(tag=[rf"^({stages})/{re.escape(name)}(_best)?$"]),
        )
        for name in names
    ]
    title = f"{' and '.join(STAGES)} per epoch ({X_AXIS}; a step here is an epoch, not an optimizer update)"
    return layout_pb2.Layout(category=[layout_pb2.Category(title=title, chart=charts)])


def layout_summary(layout: layout_pb2.Layout) -> Summary:
    """The summary the Custom Scalars plugin reads its layout from."""
    tensor = TensorProto(dtype=DT_STRING, tensor_shape=TensorShapeProto(), string_val=[layout.SerializeToString()])
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=layout_metadata.PLUGIN_NAME))
    return Summary(value=[Summary.Value(tag=layout_metadata.CONFIG_SUMMARY_TAG, tensor=tensor, metadata=meta)])


# --- HParams: which hyperparameters, in which order, under which name ---------------------


def job_swept_keys() -> list[str]:
    """The keys this job's sweep varies (as the sweep told its jobs); in a sweep that did not
    say, every key the job overrode; none in a single run."""
    overridden = [overrides.split_override(o)[0] for o in overrides.job_overrides()]
    varied = [k for k in os.environ.get(overrides.SWEPT_KEYS_ENV, "").split(",") if k in overridden]
    return varied or overridden


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def shown_name(hparams: Mapping[str, Any], key: str) -> str:
    """The name ``key`` of ``hparams`` is shown under: its short name when ``hparams`` holds
    that too with the same value (``model.activation`` -> ``activation``), else ``key``."""
    short = overrides.short_key(key)
    return short if short != key and short in hparams and _same(hparams[short], hparams[key]) else key


def hparam_columns(hparams: Mapping[str, Any], swept: Sequence[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """The HParams tab's hyperparameters: ``hparams`` (``short_hparams | swept_hparams``) with
    each swept key that a short name already shows (``model.activation`` as ``activation``,
    ``optimizer.lr`` as ``lr``) once, under its short name; ordered lr, optimizer, batch_size,
    the swept keys, the rest. Also the columns of the HParams tab: lr, optimizer and the swept
    keys, with batch_size and data while there are fewer than :data:`HPARAM_COLUMNS`."""
    kept = {name: hparams[name] for name in dict.fromkeys(shown_name(hparams, k) for k in hparams)}
    swept_names = swept_columns(hparams, swept)
    order = [n for n in FIRST_HPARAMS if n in kept] + [n for n in swept_names if n not in FIRST_HPARAMS]
    columns = {n: kept[n] for n in dict.fromkeys([*order, *kept])}
    shown = [n for n in dict.fromkeys(["lr", "optimizer", *swept_names]) if n in columns]
    shown += [n for n in ("batch_size", "data") if n in columns and n not in shown][
        : max(0, HPARAM_COLUMNS - len(shown))
    ]
    return columns, shown


def swept_columns(hparams: Mapping[str, Any], swept: Sequence[str]) -> list[str]:
    """The names the swept keys of ``hparams`` are shown under."""
    return list(dict.fromkeys(shown_name(hparams, k) for k in swept if k in hparams))


def _value_type(value: Any) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, numbers.Real):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def _proto_value(value: Any) -> struct_pb2.Value:
    kind = _value_type(value)
    if kind == api_pb2.DATA_TYPE_BOOL:
        return struct_pb2.Value(bool_value=value)
    if kind == api_pb2.DATA_TYPE_FLOAT64:
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def metric_order(metrics: Collection[str]) -> list[str]:
    """The best validation values first, then test/<main metric>, the other tests, loss last."""
    best = [m for m in metrics if m.endswith("_best")]
    main = {"test/" + m.split("/", 1)[-1].removesuffix("_best") for m in best}
    tests = sorted((m for m in metrics if m.startswith("test/")), key=lambda m: (m not in main, m == "test/loss", m))
    return list(dict.fromkeys([*best, *tests, *metrics]))


def hparams_summaries(
    hparams: Mapping[str, Any], metrics: Sequence[str], swept: Sequence[str] = (), start_time: float | None = None
) -> list[Summary]:
    """The HParams plugin's three summaries of a run: the experiment (the columns of the
    tab: :func:`hparam_columns`, and ``metrics`` in :func:`metric_order`), the session's
    start (every hyperparameter of ``hparams``, also those shown under a short name) and end."""
    columns, shown = hparam_columns(hparams, swept)
    infos = [api_pb2.HParamInfo(name=n, type=_value_type(columns[n]), differs=True) for n in shown]
    metric_infos = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m), display_name=m) for m in metric_order(metrics)]
    now = time.time()
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time or now)
    for key, value in hparams.items():
        start.hparams[key].CopyFrom(_proto_value(value))
    plugin_data = [
        (
            hparams_metadata.EXPERIMENT_TAG,
            plugin_data_pb2.HParamsPluginData(
                experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos, time_created_secs=now)
            ),
        ),
        (hparams_metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        (
            hparams_metadata.SESSION_END_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(
                session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=now)
            ),
        ),
    ]
    return [
        Summary(
            value=[
                Summary.Value(
                    tag=tag,
                    metadata=hparams_metadata.create_summary_metadata(data),
                    tensor=hparams_metadata.NULL_TENSOR,
                )
            ]
        )
        for tag, data in plugin_data
    ]


@rank_zero_only
def log_run_hparams(trainer: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """TensorBoard's HParams tab for a finished run: ``hparams`` (``short_hparams |
    swept_hparams``) against ``metrics`` (test values, best validation values; NaN left out),
    through every TensorBoard logger of ``trainer``, which is then finalized.

    The metric columns read each metric's scalar; values the logger has not logged as
    scalars yet are logged at the last epoch."""
    values = {k: float(v) for k, v in metrics.items() if v == v}
    summaries = hparams_summaries(hparams, list(values), job_swept_keys())
    for logger in trainer.loggers:
        if not isinstance(logger, LightningTensorBoardLogger):
            continue
        logged: set[str] = getattr(logger, "scalar_tags", set())
        missing = {k: v for k, v in values.items() if k not in logged}
        if missing:
            logger.log_metrics(missing, step=trainer.current_epoch)
        if isinstance(logger, TensorBoardLogger):
            logger._write_pending()
        writer = compat.tensorboard_file_writer(logger)
        for summary in summaries:
            writer.add_summary(summary, 0)
        logger.finalize("success")


# --- picture titles ----------------------------------------------------------------------


def _title_part(name: str, value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[\w.\-]+", value):
        return value  # relu, sgd, mse
    if isinstance(value, float):
        return f"{name} {value:g}"
    return f"{name} {value}"


def run_title(hparams: Mapping[str, Any], swept: Sequence[str] = (), first: str | None = None) -> str:
    """A run's key hyperparameters in one short line, for picture titles: the data (or
    ``first``), the swept values, the activation, the optimizer and its learning rate:
    ``circle · relu · sgd lr 0.03``. Names as in the HParams tab (:func:`hparam_columns`)."""
    columns, _ = hparam_columns(hparams, swept)
    parts = [first if first is not None else str(columns.get("data", ""))]
    for name in [*swept_columns(hparams, swept), "activation"]:
        if name in columns and name not in ("data", "optimizer", "lr"):
            parts.append(_title_part(overrides.short_key(name), columns[name]))
    if "optimizer" in columns:
        lr = columns.get("lr")
        parts.append(f"{columns['optimizer']} lr {lr:.3g}" if isinstance(lr, float) else str(columns["optimizer"]))
    return " · ".join(dict.fromkeys(p for p in parts if p))
