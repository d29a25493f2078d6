"""Benchmark dllab: training throughput against a hand-written loop and the usual Lightning
template, start-up time of ``dllab-train``, and peak memory of a default run.

    .venv/bin/python scripts/benchmark.py            # everything, about 2 minutes on 2 cores
    .venv/bin/python scripts/benchmark.py --quick    # about 1 minute
    .venv/bin/python scripts/benchmark.py --cases digits_b32 startup --json bench.json
    .venv/bin/python scripts/benchmark.py --profile digits_b256   # where dllab's time goes
    .venv/bin/python scripts/benchmark.py --breakdown digits_b256 # in and around the epoch step
    .venv/bin/python scripts/benchmark.py --cases sweeps --repeats 1   # whole sweeps, about 10 minutes
    .venv/bin/python scripts/benchmark.py --timeline   # where a stacked sweep's time goes, per function

Method
------
Throughput. Each case (a dataset and a batch size; the model is an MLP with hidden sizes
[128, 128], relu, Adam lr 1e-3) is trained by four methods, in one process:

- ``hand``: a plain loop over in-memory tensors, micro-batches taken by a shuffled index in
  the same order dllab uses (``TrainEpochs.order(epoch)``), the same initial weights (same
  seed) and the same optimizer implementation (``dllab.training.optim.build_optimizer``: fused Adam
  where torch has it); it keeps an epoch-mean loss on the device, as dllab does.
- ``hand_default_optim``: the same loop with torch's default Adam (no ``fused`` flag).
- ``dllab``: the real thing. The config is composed as ``dllab-train`` composes it (default
  callbacks with checkpoints, TensorBoard logger, validation every epoch) and
  ``dllab.runs.fit.train`` runs it; the timing callback below is added to the config's callbacks.
  The pictures (conf/plots) are off, as the performance issue defines this case; ``--plots``
  turns them on as a default run has them.
- ``template``: the usual set-up: a Trainer, ``DataLoader(TensorDataset)`` with shuffling, an
  automatic-optimization LightningModule that logs ``train/loss`` every step with the
  progress bar on, Lightning's default TQDM bar, checkpoint callback and model summary, a
  TensorBoard logger, and validation every epoch.

Timing. The training loop's time is the wall time from the start of the first timed epoch
to the end of training, minus validation: the whole of Lightning's validation loop (its
``run``: the model's eval/train switches, hooks, batches and metric computation; the sanity
check comes before the timed epochs). Everything else Lightning does per epoch (epoch
hooks, metric logging, checkpoints, the progress bar) counts as training. The first epoch is a
warm-up and is not timed, for all methods. Throughput = training samples / training
seconds. Validation and checkpoint-save time per epoch are reported separately. Repeats
are interleaved (the order of the methods rotates per repeat) and the table shows medians.
Progress bars write to /dev/null during the fits (they are still drawn). Torch uses
``--threads`` threads (1 by default, so that numbers are stable on a shared machine).

Breakdown. ``--breakdown CASE`` splits dllab's training time per epoch into the time inside
``training_step`` (the whole epoch's step loop and its epoch end) and Lightning's work around it
(epoch hooks, callbacks, logging, the progress bar), for the default run and for a bare one
(no validation, callbacks, logger or progress bar), next to both hand loops and to the
default-optimizer hand loop with a validation pass after each epoch, timed apart as dllab's is.

Stacked sweeps. ``stacked``: two whole sweeps (a 32-job grid on digits: seeds 0-7 x 4 learning
rates, MLP 128-128, 30 epochs; the activation demo over 2 data sets x 3 activations x 5 seeds),
each run by the basic launcher and by ``hydra/launcher=stacked`` as a subprocess (all cores,
default pictures and records): wall seconds, peak memory, the ratio, and the training loops
alone (the basic jobs' ``fit_seconds`` against the stacks').

Whole sweeps. ``sweeps`` (issue 26; not in the default cases): each case's variants run as
subprocesses with ``--threads`` torch threads, each in its own fresh sweep dir
(``hydra.sweep.dir``), interleaved over ``--repeats`` (the order rotates per repeat); medians.
(a) the activation demo, 30 jobs (``dllab-train -m hydra/launcher=stacked experiment=activations
data=circle,xor seed=0,1,2,3,4``, default pictures and records) against ``scripts/hand_sweep.py``,
the same 30 models in plain PyTorch; (b) a 32-job digits grid (seeds 0-7 x lr 0.001, 0.002,
0.005, 0.01, MLP 128-128, 30 epochs) stacked against the basic launcher, whole sweep and training
loops (the stacks' ``fit_seconds`` against the basic jobs'); (c) a 16-job ``model=cnn`` digits grid
(4 seeds x 4 lrs, 20 epochs), the same, and how many of its jobs train alone (and why, from the
sweep's log); (d) peak RSS of (b)'s stacked sweep against one job of it. ``--quick`` halves the
grids' epochs; ``--device cuda`` runs every variant on the GPU. The stacked demo's wall time is
split into phases from the launcher's time-stamped log lines and the jobs' ``metrics.json``
(see ``stacked_phases``); ``--timeline`` splits it finer, per function (``TIMED``), with
``perf_counter`` timers in the sweep's process.

Start-up and memory. ``dllab-train`` runs as a subprocess: ``--help``, ``--cfg job`` and a
bad config (median of 3 each, including interpreter start); the time from launching a
default run to the start of its first training step (a probe callback, this file's
``FirstStepProbe``, ends that process at once); and the peak resident memory
(``ru_maxrss`` from ``os.wait4``) of a default run of 5 epochs, next to that of a process
that only imports lightning.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import itertools
import json
import logging
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from dllab.data.datamodule import EpochBatch, InMemoryDataModule, build_datamodule
from dllab.models.mlp import MLP
from dllab.models.network import build_network
from dllab.runs.config import config_dir, plain
from dllab.runs.fit import train
from dllab.training.checkpointing import LastCheckpoint
from dllab.training.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
DLLAB_TRAIN = str(Path(sys.executable).parent / "dllab-train")

# case name -> (config overrides, epochs of a full run); the model is the same for all.
CASES = {
    "digits_b32": (["data=digits", "data.batch_size=32"], 40),
    "circle_b10": (["data=circle", "data.n_samples=500", "data.batch_size=10"], 40),
    "digits_b256": (["data=digits", "data.batch_size=256"], 150),
}
MODEL = ["model.hidden_sizes=[128,128]", "model.activation=relu", "optimizer=adam", "optimizer.lr=0.001"]
METHODS = ("hand", "hand_default_optim", "dllab", "template")
# dllab with nothing around the epoch step but Lightning's fit loop (--breakdown)
BARE = [
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "callbacks=none",
    "~logger",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]

# Targets of the performance issue.
TARGET_VS_HAND = {"digits_b32": 0.85, "circle_b10": 0.75, "digits_b256": 0.70}
TARGET_VS_HAND_DEFAULT_OPTIM = 1.0  # strictly greater
TARGET_VS_TEMPLATE = 2.5
TARGET_SWEEP_OVERHEAD_SECONDS = 0.5
TARGET_STARTUP_SECONDS = 1.5

# Set by --profile: records the timed epochs (all but the first) of the runs.
PROFILE: cProfile.Profile | None = None


# --- timing -----------------------------------------------------------------------------------------
class Clock:
    """perf_counter, after waiting for the GPU when there is one to wait for."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class LoopTimer(L.Callback):
    """Records, per epoch: its start, the samples trained, validation time, checkpoint time and
    the time from the start to the end of the training batch (dllab's batch is the whole epoch).

    Validation is the whole of Lightning's validation loop (its ``run``) less the checkpoint
    callbacks' work inside it: the best-checkpoint check runs at the end of validation, and
    checkpoints count as training. Checkpoint time is all the time spent in the hooks of
    checkpoint callbacks (snapshots, writes, bookkeeping) and in ``trainer.save_checkpoint``.

    dllab builds its callbacks from the config, so the benchmark adds this one as
    ``callbacks.loop_timer``; the instance Hydra makes is kept in ``LoopTimer.last``.
    """

    last: LoopTimer | None = None

    def __init__(self, device: str = "cpu") -> None:
        LoopTimer.last = self
        self.now = Clock(torch.device(device))
        self.starts: list[float] = []
        self.samples: list[int] = []
        self.val: list[float] = []
        self.ckpt: list[float] = []
        self.step: list[float] = []
        self._step_start = 0.0
        self.end = 0.0
        self.final_loss = float("nan")
        self._in_checkpoint = False

    def _timed(self, method, in_val: bool = False):
        def timed(*args, **kwargs):
            if self._in_checkpoint or not self.ckpt:  # nested (a hook that saves) or before epoch 1
                return method(*args, **kwargs)
            self._in_checkpoint = True
            t0 = self.now()
            try:
                return method(*args, **kwargs)
            finally:
                self._in_checkpoint = False
                elapsed = self.now() - t0
                self.ckpt[-1] += elapsed
                if in_val:
                    self.val[-1] -= elapsed

        return timed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint = self._timed(trainer.save_checkpoint)  # type: ignore[method-assign]
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, (Checkpoint, LastCheckpoint)):
                callback.on_validation_end = self._timed(callback.on_validation_end, in_val=True)
                callback.on_train_epoch_end = self._timed(callback.on_train_epoch_end)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if PROFILE is not None and len(self.starts) == 1:
            PROFILE.enable()
        self.starts.append(self.now())
        self.samples.append(0)
        self.val.append(0.0)
        self.ckpt.append(0.0)
        self.step.append(0.0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.samples[-1] += batch.order.numel() if isinstance(batch, EpochBatch) else len(batch[0])
        self._step_start = self.now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step[-1] += self.now() - self._step_start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val_loop = trainer.fit_loop.epoch_loop.val_loop  # time all of it: hooks, mode switches, batches
        run = val_loop.run

        def timed_run(*args, **kwargs):
            t0 = self.now()
            try:
                return run(*args, **kwargs)
            finally:
                if self.val:
                    self.val[-1] += self.now() - t0

        val_loop.run = timed_run  # type: ignore[method-assign]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = self.now()
        if PROFILE is not None:
            PROFILE.disable()
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss_epoch", metrics.get("train/loss"))
        self.final_loss = float(loss) if loss is not None else float("nan")

    def result(self) -> dict[str, float]:
        return summarize(self.starts, self.end, self.samples, self.val, self.ckpt, self.final_loss, self.step)


def summarize(starts, end, samples, val, ckpt, final_loss, step=None) -> dict[str, float]:
    """Throughput and per-epoch costs over the timed epochs (all but the first); a hand loop's
    whole epoch is its step."""
    ends = [*starts[1:], end]
    timed = range(1, len(starts))
    wall = sum(ends[i] - starts[i] for i in timed)
    val_s = sum(val[i] for i in timed)
    train_s = wall - val_s
    n = len(timed)
    return {
        "samples_per_s": sum(samples[i] for i in timed) / train_s,
        "train_ms_per_epoch": 1000 * train_s / n,
        "val_ms_per_epoch": 1000 * val_s / n,
        "ckpt_ms_per_epoch": 1000 * sum(ckpt[i] for i in timed) / n,
        "step_ms_per_epoch": 1000 * (sum(step[i] for i in timed) if step else train_s) / n,
        "final_train_loss": final_loss,
    }


@contextlib.contextmanager
def quiet():
    """Progress bars and Lightning's chatter go to /dev/null (bars are still drawn)."""
    with (
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
        contextlib.redirect_stderr(null),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


# --- the config and data all methods share ----------------------------------------------------------
def compose_config(
    case: str, epochs: int, args: argparse.Namespace, output_dir: str, extra: list[str] | None = None
) -> DictConfig:
    """The training config exactly as ``dllab-train <overrides>`` composes it."""
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    overrides = [
        *CASES[case][0],
        *MODEL,
        f"trainer.max_epochs={epochs}",
        f"trainer.accelerator={accelerator}",
        "trainer.devices=1",
        f"trainer.precision={args.precision}",
        f"threads={args.threads}",
        *([] if args.plots else ["plots=none"]),
        *(extra or []),
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg


def load_data(cfg: DictConfig) -> InMemoryDataModule:
    datamodule = build_datamodule(cfg.data)
    datamodule.setup()
    return datamodule


def autocast(device: torch.device, precision: str):
    """Lightning's bf16-mixed: autocast without its weight cache (the weights change inside it)."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


# --- the four methods -------------------------------------------------------------------------------
def run_hand(
    cfg: DictConfig, datamodule: InMemoryDataModule, args, default_optim: bool, validate: bool = False
) -> dict:
    """The hand-written loop; ``validate`` adds the usual full-batch validation pass after each
    epoch (eval mode, inference mode, torchmetrics' accuracy, macro F1 and mean-loss objects),
    timed apart like dllab's: what validation costs the next epoch's training shows."""
    device = torch.device(args.device)
    now = Clock(device)
    epochs_loader = datamodule.train_dataloader()  # not attached to a Trainer: CPU tensors, epoch 0
    x, y = epochs_loader.x.to(device), epochs_loader.y.to(device)
    batch_size = epochs_loader.batch_size

    torch.manual_seed(cfg.seed)  # what L.seed_everything does before dllab builds its module
    model = build_network(plain(cfg.model), datamodule.input_size, datamodule.output_size).to(device)
    if default_optim:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    else:
        optimizer = build_optimizer(plain(cfg.optimizer), model.parameters())
    criterion = nn.CrossEntropyLoss()
    if validate:
        val_x, val_y = datamodule.val_dataloader().x.to(device), datamodule.val_dataloader().y.to(device)
        classes = datamodule.output_size
        metrics = MetricCollection(
            {"acc": MulticlassAccuracy(classes, average="micro"), "f1": MulticlassF1Score(classes, average="macro")}
        ).to(device)
        val_loss = MeanMetric().to(device)

    starts, samples, val = [], [], []
    for epoch in range(cfg.trainer.max_epochs):
        if PROFILE is not None and epoch == 1:
            PROFILE.enable()
        starts.append(now())
        order = epochs_loader.order(epoch).to(device)
        total = torch.zeros((), device=device)
        with autocast(device, args.precision):  # around the epoch, as dllab's step has it
            for first in range(0, order.numel(), batch_size):
                index = order[first : first + batch_size]
                loss = criterion(model(x[index]), y[index])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                total += loss.detach() * index.numel()
        samples.append(order.numel())
        val.append(0.0)
        if validate:
            t0 = now()
            model.eval()
            with torch.inference_mode(), autocast(device, args.precision):
                output = model(val_x)
                val_loss.update(criterion(output, val_y), weight=len(val_y))
                metrics.update(output.argmax(-1), val_y)
            _ = [v.item() for v in (*metrics.compute().values(), val_loss.compute())]  # to the host, as logged
            metrics.reset()
            val_loss.reset()
            model.train()
            val[-1] = now() - t0
    end = now()
    if PROFILE is not None:
        PROFILE.disable()
    return summarize(starts, end, samples, val, [0.0] * len(starts), float(total) / order.numel())


def run_dllab(cfg: DictConfig, args) -> dict:
    with open_dict(cfg):
        cfg.callbacks.loop_timer = {"_target_": f"{__name__}.LoopTimer", "device": args.device}
    with quiet():
        train(cfg)
    assert LoopTimer.last is not None
    return LoopTimer.last.result()


class TemplateModule(L.LightningModule):
    """The LightningModule of the usual template: automatic optimization, per-step logging."""

    def __init__(self, input_size: int, output_size: int, hidden_sizes: list[int], lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = MLP(input_size, output_size, hidden_sizes, "relu")
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.criterion(logits, y), prog_bar=True)
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


def run_template(cfg: DictConfig, datamodule: InMemoryDataModule, args, output_dir: str) -> dict:
    train_split, val_split = datamodule.train_dataloader(), datamodule.val_dataloader()
    batch_size = train_split.batch_size
    L.seed_everything(cfg.seed, verbose=False)
    model = TemplateModule(
        datamodule.input_size, datamodule.output_size, list(cfg.model.hidden_sizes), cfg.optimizer.lr
    )
    train_set, val_set = TensorDataset(train_split.x, train_split.y), TensorDataset(val_split.x, val_split.y)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=batch_size)
    timer = LoopTimer(args.device)
    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        default_root_dir=output_dir,
        logger=TensorBoardLogger(output_dir),
        callbacks=[timer],
    )
    with quiet():
        trainer.fit(model, train_loader, val_loader)
    return timer.result()


def run_method(method: str, case: str, args) -> dict:
    """One training run; checkpoints and logs go to a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="dllab-bench-") as output_dir:
        bare = method == "dllab_bare"
        cfg = compose_config(case, epochs_of(case, args), args, output_dir, BARE if bare else None)
        if method in ("dllab", "dllab_bare"):
            return run_dllab(cfg, args)
        datamodule = load_data(cfg)  # the splits and scaling dllab uses
        if method == "template":
            return run_template(cfg, datamodule, args, output_dir)
        default_optim = method.startswith("hand_default_optim")
        return run_hand(cfg, datamodule, args, default_optim, validate=method.endswith("_validating"))


def epochs_of(case: str, args) -> int:
    return CASES[case][1] // 2 if args.quick else CASES[case][1]


def benchmark_throughput(cases: list[str], args) -> dict:
    """Interleaved repeats of every method per case; returns all runs and their medians."""
    results = {}
    for case in cases:
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}
        for repeat in range(args.repeats):
            shift = repeat % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                runs[method].append(run_method(method, case, args))
            line = ", ".join(f"{m} {runs[m][-1]['samples_per_s']:,.0f}" for m in METHODS)
            print(f"  {case} repeat {repeat + 1}/{args.repeats}: samples/s {line}", flush=True)
        medians = {m: {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]} for m in METHODS}
        results[case] = {"epochs": epochs_of(case, args), "runs": runs, "median": medians}
    return results


def profile(case: str, args, top: int = 25) -> str:
    """cProfile of the timed epochs of one hand and one dllab run: most own time, most cumulative time."""
    global PROFILE
    out = io.StringIO()
    for method in ("hand", "dllab"):
        PROFILE = cProfile.Profile()
        result = run_method(method, case, args)
        timed = f"epochs 2-{epochs_of(case, args)}"
        out.write(f"\n### {method}, {case}, {timed}: {result['samples_per_s']:,.0f} samples/s\n")
        for order in ("tottime", "cumtime"):
            pstats.Stats(PROFILE, stream=out).sort_stats(order).print_stats(top)
    PROFILE = None
    return out.getvalue()


def breakdown(case: str, args) -> str:
    """Where dllab's training time per epoch goes, default and bare, next to the hand loops."""
    methods = ("hand", "hand_default_optim", "hand_default_optim_validating", "dllab", "dllab_bare")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        shift = repeat % len(methods)
        for method in methods[shift:] + methods[:shift]:
            runs[method].append(run_method(method, case, args))
    median = {m: {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]} for m in methods}
    reference = median["hand_default_optim"]["train_ms_per_epoch"]
    lines = [
        f"\n### {case}: ms per epoch (medians of {args.repeats} interleaved repeats)\n",
        "| method | training | in training_step | around it | validation (apart) | hand_default_optim / method |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        r = median[m]
        train, step = r["train_ms_per_epoch"], r["step_ms_per_epoch"]
        lines.append(
            f"| {m} | {train:.2f} | {step:.2f} | {train - step:.2f} | {r['val_ms_per_epoch']:.2f} "
            f"| {reference / train:.2f} |"
        )
    return "\n".join(lines)


# --- start-up and memory (subprocesses) -------------------------------------------------------------
class FirstStepProbe(L.Callback):
    """Added to a ``dllab-train`` run: writes the wall-clock time when the first training step
    starts to $DLLAB_BENCH_PROBE, then ends the process."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        Path(os.environ["DLLAB_BENCH_PROBE"]).write_text(repr(time.time()))
        os._exit(0)


# Runs a command and writes its launch time, wall seconds and peak RSS (KiB) to argv[1]. The peak
# RSS comes from a process this small because Linux carries a parent's peak RSS over into a child
# it forks: ru_maxrss of a child of the benchmark (torch loaded) would read at least as large.
WAIT4 = """import os, subprocess, sys, time
launched, started = time.time(), time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
open(sys.argv[1], "w").write(f"{launched} {seconds} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(command: list[str], env: dict[str, str]) -> dict:
    """Run a command; return its launch time, wall seconds, exit code, peak RSS (MiB) and output."""
    with tempfile.TemporaryDirectory() as tmp:
        measured = Path(tmp) / "measured"
        done = subprocess.run(
            [sys.executable, "-c", WAIT4, str(measured), *command],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        launched, seconds, rss_kib = measured.read_text().split()
    return {
        "launched": float(launched),
        "seconds": float(seconds),
        "code": done.returncode,
        "mib": int(rss_kib) / 1024,
        "output": done.stdout,
    }


def benchmark_startup(args) -> dict:
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    run_args = [f"trainer.accelerator={accelerator}", f"threads={args.threads}"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dllab-bench-") as tmp:
        env = {**os.environ, "DLLAB_LOG_DIR": tmp}

        def measure(name: str, command: list[str], env: dict[str, str], expected_code: int = 0) -> dict:
            child = run_child(command, env)
            if child["code"] != expected_code:
                message = f"{name}: exit code {child['code']} (expected {expected_code})"
                raise RuntimeError(f"{message}:\n{child['output']}")
            return child

        commands = {
            "dllab-train --help": ([DLLAB_TRAIN, "--help"], 0),
            "dllab-train --cfg job": ([DLLAB_TRAIN, "--cfg", "job"], 0),
            "dllab-train model.activation=nope (config error)": ([DLLAB_TRAIN, "model.activation=nope"], 2),
        }
        for name, (command, expected_code) in commands.items():
            times = [measure(name, command, env, expected_code)["seconds"] for _ in range(3)]
            results[name] = {"seconds": statistics.median(times), "runs": times}
            print(f"  {name}: {results[name]['seconds']:.2f} s", flush=True)

        name = "launch to first training step (default run)"
        probe_file = Path(tmp) / "first_step"
        probe = f"+callbacks.first_step._target_={Path(__file__).stem}.FirstStepProbe"
        probe_env = {
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")])),
            "DLLAB_BENCH_PROBE": str(probe_file),
        }
        times = []
        for _ in range(1 if args.quick else 3):
            child = measure(name, [DLLAB_TRAIN, *run_args, probe], probe_env)
            times.append(float(probe_file.read_text()) - child["launched"])
            probe_file.unlink()
        results[name] = {"seconds": statistics.median(times), "runs": times}
        print(f"  {name}: {results[name]['seconds']:.2f} s", flush=True)

        name = "peak RSS, default run of 5 epochs"
        child = measure(name, [DLLAB_TRAIN, *run_args, "trainer.max_epochs=5"], env)
        results[name] = {"mib": child["mib"], "seconds": child["seconds"]}
        print(f"  {name}: {child['mib']:.0f} MiB ({child['seconds']:.1f} s)", flush=True)
        name = "peak RSS, python -c 'import lightning' (for reference)"
        results[name] = {"mib": measure(name, [sys.executable, "-c", "import lightning"], env)["mib"]}
        print(f"  {name}: {results[name]['mib']:.0f} MiB", flush=True)
    return results


def benchmark_sweep(args, jobs: int = 16) -> dict:
    """A 16-job grid of short digits runs with Hydra's basic launcher. A job's overhead is the
    time from the previous job's metrics.json to its own (the whole job: Hydra's compose and
    job set-up, data, model, trainer, test, records; the one-time imports fall before the
    first job) minus its training loop (fit_seconds)."""
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory(prefix="dllab-bench-sweep-") as tmp:
        env = {**os.environ, "DLLAB_LOG_DIR": tmp}
        seeds = ",".join(str(i) for i in range(jobs))
        command = [DLLAB_TRAIN, "-m", f"seed={seeds}", "trainer.max_epochs=3", "plots=none",
                   f"trainer.accelerator={accelerator}", f"threads={args.threads}"]  # fmt: skip
        child = run_child(command, env)
        if child["code"] != 0:
            raise RuntimeError(f"sweep failed:\n{child['output'][-3000:]}")
        finished = sorted(
            (f.stat().st_mtime, json.loads(f.read_text())["fit_seconds"])
            for f in Path(tmp).glob("*/multiruns/*/*/metrics.json")
        )
        # job i+1 runs from job i's metrics.json to its own: all of it but the one-time imports
        overheads = [(end - previous_end) - fit for (previous_end, _), (end, fit) in itertools.pairwise(finished)]
        fits = [fit for _, fit in finished]
    result = {
        "jobs": len(fits),
        "sweep_seconds": child["seconds"],
        "median_job_overhead_seconds": statistics.median(overheads),
        "median_fit_seconds": statistics.median(fits),
    }
    print(
        f"  sweep of {len(fits)} jobs: {child['seconds']:.1f} s; per job: overhead "
        f"{result['median_job_overhead_seconds']:.2f} s (median), training loop {result['median_fit_seconds']:.2f} s",
        flush=True,
    )
    return result


# Stacked sweeps (hydra/launcher=stacked) against the basic launcher: name -> the sweep's overrides.
STACKED_SWEEPS = {
    "grid32": [
        "data=digits",
        "seed=0,1,2,3,4,5,6,7",
        "optimizer.lr=0.0003,0.001,0.003,0.01",
        "model.hidden_sizes=[128,128]",
        "trainer.max_epochs=30",
    ],
    "activations": [
        "experiment=activations",
        "data=circle,xor",
        "model.activation=relu,tanh,sigmoid",
        "seed=0,1,2,3,4",
    ],
}
TARGET_STACKED = {"grid32": 5.0, "activations": 3.0}


def benchmark_stacked(args) -> dict:
    """Each sweep of STACKED_SWEEPS run whole (``dllab-train -m``, its default pictures and
    records) by the basic launcher, then by ``hydra/launcher=stacked``, as subprocesses with
    torch's default threads (all cores): wall seconds and peak memory of each, their ratio, and
    the training loops alone (the basic jobs' fit_seconds added up against the stacks')."""
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    results = {}
    for name, overrides in STACKED_SWEEPS.items():
        result: dict = {}
        for launcher in ("basic", "stacked"):
            with tempfile.TemporaryDirectory(prefix="dllab-bench-stacked-") as tmp:
                env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"DLLAB_LOG_DIR": tmp}
                extra = ["hydra/launcher=stacked"] if launcher == "stacked" else []
                sweep_dir = Path(tmp) / "sweep"
                command = [DLLAB_TRAIN, "-m", *extra, *overrides, f"trainer.accelerator={accelerator}",
                           f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
                child = run_child(command, env)
                if child["code"] != 0:
                    raise RuntimeError(f"{name} ({launcher}) failed:\n{child['output'][-3000:]}")
                result[launcher] = {"seconds": child["seconds"], "mib": child["mib"], **read_sweep(sweep_dir)}
        result["ratio"] = result["basic"]["seconds"] / result["stacked"]["seconds"]
        result["fit_ratio"] = result["basic"]["fit_seconds"] / max(result["stacked"]["fit_seconds"], 1e-9)
        print(
            f"  {name}: basic {result['basic']['seconds']:.1f} s, stacked {result['stacked']['seconds']:.1f} s "
            f"({result['ratio']:.2f}x; training loops {result['fit_ratio']:.2f}x)",
            flush=True,
        )
        results[name] = result
    return results


def stacked_table(results: dict) -> str:
    lines = [
        "| sweep | jobs | basic s | stacked s | whole sweep | training loops | stacks | peak MiB basic / stacked "
        "| stack tensors MiB |",
        "|---|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for name, r in results.items():
        basic, stacked = r["basic"], r["stacked"]
        lines.append(
            f"| {name} | {basic['jobs']} | {basic['seconds']:.1f} | {stacked['seconds']:.1f} "
            f"| {check(r['ratio'], TARGET_STACKED[name])} | {r['fit_ratio']:.2f}x "
            f"| {'+'.join(str(n) for n in stacked['stacks']) or '-'} | {basic['mib']:.0f} / {stacked['mib']:.0f} "
            f"| {stacked['stack_mib']:.1f} |"
        )
    return "\n".join(lines)


# --- whole sweeps against their references (issue 26) ----------------------------------------------
# name -> {variant: the sweep's command line after dllab-train (or, for "hand", after the script)}.
# Each variant runs as a subprocess in its own sweep dir; the first variant is the one measured
# against the others.
HAND_SWEEP = ROOT / "scripts" / "hand_sweep.py"
ACTIVATION_DEMO = ["hydra/launcher=stacked", "experiment=activations", "data=circle,xor", "seed=0,1,2,3,4"]
GRID32 = ["data=digits", "model.hidden_sizes=[128,128]", "optimizer.lr=0.001,0.002,0.005,0.01"]
ONE_JOB = ["data=digits", "model.hidden_sizes=[128,128]", "optimizer.lr=0.001", "seed=0"]  # grid32's first job
CNN16 = ["model=cnn", "data=digits", "seed=0,1,2,3", "optimizer.lr=0.001,0.002,0.005,0.01"]
# epochs of the grids (halved by --quick); the activation demo keeps its experiment's 5
SWEEP_EPOCHS = {"grid32": 30, "cnn16": 20}
# Targets of issue 26: row -> (comparison, value).
SWEEP_TARGETS = {
    "activations": ("<=", 1.5),  # dllab stacked / hand_sweep.py, whole sweep
    "grid32": (">=", 4.0),  # basic / stacked, whole sweep
    "cnn16 training": (">=", 2.0),  # basic / stacked, training loops
    "cnn16 alone": ("<=", 0),  # jobs of the CNN grid that train alone
    "memory": ("<=", 1.5),  # peak RSS, 32-job stacked grid / one job
}


def sweeps_commands(args, sweep_dir: Path) -> dict[str, dict[str, list[str]]]:
    """Every case's variants as command lines writing under ``sweep_dir`` (a fresh one per run)."""
    cuda = args.device == "cuda"
    common = [f"threads={args.threads}", *(["trainer.accelerator=gpu"] if cuda else [])]
    epochs = {name: e // 2 if args.quick else e for name, e in SWEEP_EPOCHS.items()}
    sweep = [DLLAB_TRAIN, "-m", f"hydra.sweep.dir={sweep_dir}", *common]
    stacked = [*sweep, "hydra/launcher=stacked"]
    grid32 = [*GRID32, f"trainer.max_epochs={epochs['grid32']}"]
    cnn16 = [*CNN16, f"trainer.max_epochs={epochs['cnn16']}"]
    return {
        "activations": {
            "dllab stacked": [*sweep, *ACTIVATION_DEMO],
            "hand_sweep.py": [sys.executable, str(HAND_SWEEP), "--out", str(sweep_dir), "--device", args.device],
        },
        "grid32": {
            "stacked": [*stacked, "seed=0,1,2,3,4,5,6,7", *grid32],
            "basic": [*sweep, "seed=0,1,2,3,4,5,6,7", *grid32],
            # the same data and network, one job (seed 0, the first lr): the memory case's reference
            "one job": [DLLAB_TRAIN, f"hydra.run.dir={sweep_dir}", *common, *ONE_JOB, grid32[-1]],
        },
        "cnn16": {
            "stacked": [*stacked, *cnn16],
            "basic": [*sweep, *cnn16],
        },
    }


def read_sweep(sweep_dir: Path) -> dict:
    """A finished sweep's jobs from their metrics.json: how many, how many completed, the time
    of the training loops (each stack's once, plus each job trained alone), the stacks' sizes,
    the jobs that trained alone and when the last metrics.json was written."""
    files = list(sweep_dir.glob("*/metrics.json")) or list(sweep_dir.glob("metrics.json"))
    metrics = [json.loads(f.read_text()) for f in files]
    stacks = {tuple(m["stack"]["jobs"]): m["stack"] for m in metrics if "stack" in m}
    alone = [m for m in metrics if "stack" not in m]
    return {
        "jobs": len(metrics),
        "completed": sum(m.get("status") == "completed" for m in metrics),
        "fit_seconds": sum(s["fit_seconds"] for s in stacks.values()) + sum(m.get("fit_seconds", 0.0) for m in alone),
        "stacks": [len(jobs) for jobs in stacks],
        "stack_mib": max((s.get("memory_mib", 0.0) for s in stacks.values()), default=0.0),
        "alone": len(alone),
        "last_written": max((f.stat().st_mtime for f in files), default=float("nan")),
    }


LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\] (.*)$")


def stacked_phases(run: dict) -> dict[str, float]:
    """Where a stacked sweep's wall time goes, from the launcher's log lines (time stamps to the
    millisecond) and the jobs' metrics.json: start-up (interpreter, imports, the sweeper's
    composition of every job to check the batch) up to "Launching"; the launcher composing each
    job again (up to its last "#N :" line, one composition short); preparing (that last
    composition, then every job's config checks, data and model) up to the first stack; the
    stacks' training (their ``fit_seconds``); writing the jobs (the rest, up to the last metrics.json);
    the sweep's end (summary files and table) up to the process's end."""
    stamps = []
    for line in run["output"].splitlines():
        match = LOG_LINE.match(line)
        if match:
            moment = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            stamps.append((moment, match[2]))
    launching = next(t for t, text in stamps if text.startswith("Launching"))
    composed = max(t for t, text in stamps if text.startswith("\t#"))
    first_stack = min((t for t, text in stamps if text.startswith("stack of")), default=float("nan"))
    trained = run["fit_seconds"]  # the stacks' own timers, to the millisecond
    end = run["launched"] + run["seconds"]
    return {
        "start-up, imports, sweeper's compositions": launching - run["launched"],
        "launcher's compositions": composed - launching,
        "preparing jobs (checks, data, model)": first_stack - composed,
        "training the stacks": trained,
        "writing the jobs": run["last_written"] - first_stack - trained,
        "sweep summary and exit": end - run["last_written"],
    }


def benchmark_sweeps(args) -> dict:
    """Every case of sweeps_commands, its variants interleaved (their order rotates per repeat),
    each a subprocess in a fresh sweep dir: wall seconds, peak RSS and what read_sweep reads."""
    runs: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="dllab-bench-sweeps-") as tmp:
        env = {**os.environ, "DLLAB_LOG_DIR": tmp}
        for repeat in range(args.repeats):
            for case in sweeps_commands(args, Path(tmp)):
                names = list(sweeps_commands(args, Path(tmp))[case])
                shift = repeat % len(names)
                for variant in names[shift:] + names[:shift]:
                    sweep_dir = Path(tmp) / f"{case}-{variant.replace(' ', '_')}-{repeat}"
                    command = sweeps_commands(args, sweep_dir)[case][variant]
                    child = run_child(command, env)
                    if child["code"] != 0:
                        raise RuntimeError(f"{case} ({variant}) failed:\n{child['output'][-3000:]}")
                    run = child | read_sweep(sweep_dir)
                    reasons = sorted({line.split("runs alone: ", 1)[1] for line in child["output"].splitlines()
                                      if "runs alone: " in line})  # fmt: skip
                    run["alone_reasons"] = reasons
                    if case == "activations" and variant == "dllab stacked":
                        run["phases"] = stacked_phases(run)
                    del run["output"]
                    runs.setdefault(case, {}).setdefault(variant, []).append(run)
                    jobs = f"{run['jobs']} jobs"
                    if run["completed"]:  # dllab's: how they trained
                        jobs += f" ({run['alone']} alone), training {run['fit_seconds']:.1f} s"
                    print(f"  {case} {variant} repeat {repeat + 1}/{args.repeats}: {run['seconds']:.1f} s, "
                          f"{run['mib']:.0f} MiB, {jobs}", flush=True)  # fmt: skip
    median = {
        case: {v: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "mib", "fit_seconds", "alone")}
               for v, rs in variants.items()}
        for case, variants in runs.items()
    }  # fmt: skip
    return {"runs": runs, "median": median}


def met(value: float, target: tuple[str, float]) -> str:
    comparison, limit = target
    return "yes" if (value <= limit if comparison == "<=" else value >= limit) else "MISS"


def sweeps_table(results: dict) -> str:
    """case, variant, median, ratio, target, met? (the ratio and target on the measured row)."""
    m = results["median"]
    rows = []

    def add(case: str, variant: str, value: str, ratio: float | None = None, name: str = "-") -> None:
        """A row; ``ratio`` (or, for a count, the value itself) is checked against SWEEP_TARGETS[name]."""
        target = SWEEP_TARGETS.get(name)
        shown = "" if ratio is None or name.endswith("alone") else f"{ratio:.2f}"
        rows.append(
            f"| {case} | {variant} | {value} | {shown} | {f'{target[0]} {target[1]:g}' if target else ''} "
            f"| {met(ratio, target) if target and ratio is not None else ''} |"
        )

    if "activations" in m:
        a = m["activations"]
        ratio = a["dllab stacked"]["seconds"] / a["hand_sweep.py"]["seconds"]
        add("activations (30 jobs)", "dllab stacked", f"{a['dllab stacked']['seconds']:.1f} s", ratio, "activations")
        add("activations (30 jobs)", "hand_sweep.py", f"{a['hand_sweep.py']['seconds']:.1f} s")
    if "grid32" in m:
        g = m["grid32"]
        add("grid32 digits MLP", "stacked", f"{g['stacked']['seconds']:.1f} s",
            g["basic"]["seconds"] / g["stacked"]["seconds"], "grid32")  # fmt: skip
        add("grid32 digits MLP", "basic", f"{g['basic']['seconds']:.1f} s")
        add("grid32 training loops", "stacked", f"{g['stacked']['fit_seconds']:.1f} s",
            g["basic"]["fit_seconds"] / g["stacked"]["fit_seconds"], "-")  # fmt: skip
        add("grid32 training loops", "basic", f"{g['basic']['fit_seconds']:.1f} s")
        add("memory: peak RSS", "grid32 stacked", f"{g['stacked']['mib']:.0f} MiB",
            g["stacked"]["mib"] / g["one job"]["mib"], "memory")  # fmt: skip
        add("memory: peak RSS", "one job", f"{g['one job']['mib']:.0f} MiB")
    if "cnn16" in m:
        c = m["cnn16"]
        add("cnn16 digits CNN", "stacked", f"{c['stacked']['seconds']:.1f} s",
            c["basic"]["seconds"] / c["stacked"]["seconds"], "-")  # fmt: skip
        add("cnn16 digits CNN", "basic", f"{c['basic']['seconds']:.1f} s")
        add("cnn16 training loops", "stacked", f"{c['stacked']['fit_seconds']:.1f} s",
            c["basic"]["fit_seconds"] / c["stacked"]["fit_seconds"], "cnn16 training")  # fmt: skip
        add("cnn16 training loops", "basic", f"{c['basic']['fit_seconds']:.1f} s")
        add("cnn16 jobs alone", "stacked", f"{c['stacked']['alone']:.0f} of 16", c["stacked"]["alone"], "cnn16 alone")
    lines = [
        "| case | variant | median | ratio | target | met? |",
        "|---|---|---:|---:|---|---|",
        *rows,
        "",
        "ratios: activations dllab / hand; grid32 and cnn16 basic / stacked; memory stacked / one job",
    ]
    for case, variants in results["runs"].items():
        for variant, rs in variants.items():
            if rs[-1]["alone_reasons"]:
                lines.append(f"{case} {variant}: runs alone: {'; '.join(rs[-1]['alone_reasons'])}")
    phases = [r["phases"] for r in results["runs"].get("activations", {}).get("dllab stacked", [])]
    if phases:
        lines += ["", "Where the stacked activation demo's time goes (medians, s):", ""]
        lines += [f"- {name}: {statistics.median(p[name] for p in phases):.2f}" for name in phases[0]]
    return "\n".join(lines)


# --- a stacked sweep's time line (--timeline) -------------------------------------------------------
# (module, attribute, label): the functions a stacked sweep's phases run, timed cumulatively (the
# outermost call of each; nested timers count inside their callers too).
TIMED = [
    ("hydra.plugins.sweeper", "Sweeper.validate_batch_is_legal", "compose: every job, for the sweeper's batch check"),
    ("hydra._internal.config_loader_impl", "ConfigLoaderImpl.load_sweep_config", "compose: a job (sweeper + launcher)"),
    ("dllab.launchers.stacked", "job_config", "launcher: copy a job's config (job_config)"),
    ("dllab.launchers.stacked", "prepare", "prepare: a job (checks, data, module, callbacks)"),
    ("dllab.checks", "check_config", "prepare: check_config"),
    ("dllab.runs.build", "seeded_data_and_module", "prepare: data and module"),
    ("dllab.data.datamodule", "InMemoryDataModule.setup", "prepare: data (generate, split)"),
    ("dllab.runs.config", "instantiate_enabled", "prepare/write: instantiate callbacks, loggers"),
    ("dllab.stacked.group", "StackedGroup.__init__", "train: build the stacks"),
    ("dllab.stacked.group", "StackedGroup.fit", "train: the stacks' fit"),
    ("hydra.core.utils", "run_job", "write: Hydra's run_job (job dir, .hydra/, logs, the task)"),
    ("hydra.core.utils", "_save_config", "write: .hydra/*.yaml"),
    ("dllab.stacked.outputs", "write_run", "write: a job's run dir (write_run)"),
    ("dllab.stacked.outputs", "save_config", "write: config.yaml"),
    ("dllab.stacked.outputs", "replay_epochs", "write: replay epochs (TensorBoard scalars, epoch pictures)"),
    ("dllab.pictures.callbacks", "PlotCallback.on_test_end", "write: final pictures (on_test_end)"),
    ("dllab.pictures.plots", "to_png", "write: pictures, matplotlib renders a PNG"),
    ("dllab.pictures.plots", "decision_boundary_figure", "write: pictures, build decision boundary figure"),
    ("dllab.pictures.plots", "confusion_matrix_figure", "write: pictures, build confusion matrix figure"),
    ("dllab.pictures.plots", "curves_figure", "write: pictures, build curves figure"),
    ("dllab.stacked.outputs", "test_metrics", "write: test"),
    ("torch", "save", "write: torch.save (checkpoints)"),
    ("dllab.training.loggers", "log_run_hparams", "write: TensorBoard hparams"),
    ("lightning.pytorch.loggers.tensorboard", "TensorBoardLogger.finalize", "write: TensorBoard close"),
    ("dllab.stacked.outputs", "record", "write: metrics.json"),
    ("dllab.sweeps.summary", "SweepSummaryCallback.on_multirun_end", "summary: the sweep's summary files"),
    ("dllab.sweeps.summary", "write_curves_plot", "summary: summary_curves.png"),
    ("dllab.sweeps.summary", "read_curves", "summary: read curves from TensorBoard events"),
]

# Runs dllab-train (argv[3:]) with perf_counter timers around TIMED (argv[2], JSON; every
# reference to a timed function in a loaded module is replaced), after importing what the
# timed modules import (timed apart, as "imports"); writes {label: [seconds, calls]} to argv[1].
# Timers cost a microsecond a call, where cProfile inflates OmegaConf's many small calls fivefold.
TIMELINE_CHILD = """import atexit, functools, importlib, json, runpy, sys, time
started = time.perf_counter()
totals, active = {}, set()
def timed(label, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if label in active:
            return function(*args, **kwargs)
        active.add(label)
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            active.discard(label)
            seconds, calls = totals.get(label, (0.0, 0))
            totals[label] = (seconds + time.perf_counter() - t, calls + 1)
    return wrapper
result, targets = sys.argv[1], json.loads(sys.argv[2])
owners = {module: importlib.import_module(module) for module, _, _ in targets}
import matplotlib.pyplot, torch.utils.tensorboard, sklearn.model_selection, dllab.train
totals["imports (torch, Lightning, TensorBoard, scikit-learn, matplotlib, Hydra, dllab)"] = (
    time.perf_counter() - started, 1)
def patch(module, attribute, label):
    owner = owners[module]
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    wrapper = timed(label, original)
    setattr(owner, name, wrapper)
    for loaded in list(sys.modules.values()):
        names = getattr(loaded, "__dict__", {})
        for key in [k for k, v in list(names.items()) if v is original]:
            names[key] = wrapper
for target in targets:
    patch(*target)
def write():
    totals["main: the whole sweep after the imports"] = (time.perf_counter() - main_started, 1)
    open(result, "w").write(json.dumps(totals))
atexit.register(write)
main_started = time.perf_counter()
sys.argv = ["dllab-train", *sys.argv[3:]]
runpy.run_module("dllab.train", run_name="__main__")
"""


def timeline(args) -> str:
    """The stacked activation demo (30 jobs) run once with TIMELINE_CHILD's timers: cumulative
    seconds and calls per timed function, largest first."""
    with tempfile.TemporaryDirectory(prefix="dllab-bench-timeline-") as tmp:
        out = Path(tmp) / "timeline.json"
        sweep = ["-m", f"hydra.sweep.dir={Path(tmp) / 'sweep'}", f"threads={args.threads}", *ACTIVATION_DEMO]
        if args.device == "cuda":
            sweep.append("trainer.accelerator=gpu")
        command = [sys.executable, "-c", TIMELINE_CHILD, str(out), json.dumps(TIMED), *sweep]
        child = run_child(command, {**os.environ, "DLLAB_LOG_DIR": tmp})
        if child["code"] != 0:
            raise RuntimeError(f"timeline run failed:\n{child['output'][-3000:]}")
        totals = json.loads(out.read_text())
    lines = [
        f"\n### Stacked activation demo, 30 jobs: {child['seconds']:.1f} s wall; cumulative seconds per function",
        "",
        "| seconds | calls | per call | what |",
        "|---:|---:|---:|---|",
    ]
    for label, (seconds, calls) in sorted(totals.items(), key=lambda item: -item[1][0]):
        lines.append(f"| {seconds:.2f} | {calls} | {seconds / calls:.3f} | {label} |")
    return "\n".join(lines)


# --- report -----------------------------------------------------------------------------------------
def check(value: float, target: float, strict: bool = False) -> str:
    ok = value > target if strict else value >= target
    return f"{value:.2f} ({'>' if strict else '>='} {target:g}: {'ok' if ok else 'MISS'})"


def throughput_tables(results: dict) -> str:
    lines = [
        "| case | epochs | hand | hand_default_optim | dllab | template "
        "| dllab/hand | dllab/hand_default_optim | dllab/template |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for case, result in results.items():
        m = {method: result["median"][method]["samples_per_s"] for method in METHODS}
        lines.append(
            f"| {case} | {result['epochs']} | "
            + " | ".join(f"{m[method]:,.0f}" for method in METHODS)
            + f" | {check(m['dllab'] / m['hand'], TARGET_VS_HAND[case])}"
            + f" | {check(m['dllab'] / m['hand_default_optim'], TARGET_VS_HAND_DEFAULT_OPTIM, strict=True)}"
            + f" | {check(m['dllab'] / m['template'], TARGET_VS_TEMPLATE)} |"
        )
    lines += [
        "",
        "Per epoch (ms, medians): training loop, validation, checkpoint callbacks (checks, snapshots, "
        "writes; part of the training loop); final epoch-mean training loss",
        "",
        "| case | method | train ms | val ms | ckpt ms | final train loss |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, result in results.items():
        for method in METHODS:
            r = result["median"][method]
            lines.append(
                f"| {case} | {method} | {r['train_ms_per_epoch']:.2f} | {r['val_ms_per_epoch']:.2f} "
                f"| {r['ckpt_ms_per_epoch']:.2f} | {r['final_train_loss']:.4f} |"
            )
    return "\n".join(lines)


def startup_table(results: dict) -> str:
    lines = ["| measurement | value | target |", "|---|---:|---|"]
    for name, r in results.items():
        if "mib" in r:
            lines.append(f"| {name} | {r['mib']:.0f} MiB | |")
        else:
            target = "" if name.startswith("launch") else f"< {TARGET_STARTUP_SECONDS:g} s"
            ok = "" if not target else (": ok" if r["seconds"] < TARGET_STARTUP_SECONDS else ": MISS")
            lines.append(f"| {name} | {r['seconds']:.2f} s | {target}{ok} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    parser.add_argument("--quick", action="store_true", help="3 repeats and half the epochs")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per method (default 5; --quick 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--plots", action="store_true", help="dllab draws its default pictures too")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=[*CASES, "startup", "sweep", "stacked", "sweeps"],
        default=[*CASES, "startup", "sweep", "stacked"],
        help="throughput cases, startup (start-up times and peak memory), sweep (per-job overhead), "
        "stacked (hydra/launcher=stacked against the basic launcher, whole sweeps), sweeps (issue 26's "
        "whole sweeps against a hand-written script and the basic launcher, peak RSS; not in the default: "
        "about 10 minutes on 2 cores per repeat)",
    )
    parser.add_argument("--profile", choices=list(CASES), help="only profile a hand and a dllab run")
    parser.add_argument("--breakdown", choices=list(CASES), help="only split dllab's epoch time (see above)")
    parser.add_argument(
        "--timeline", action="store_true", help="only time the stacked activation demo's phases (see TIMED)"
    )
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU")

    torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "precision": args.precision,
        "plots": args.plots,
        "repeats": args.repeats,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    if machine["load_average_at_start"] > (os.cpu_count() or 1) / 2:
        print("warning: the machine is busy; absolute numbers will be noisy, interleaved ratios less so")

    if args.profile:
        print(profile(args.profile, args))
        return
    if args.breakdown:
        print(breakdown(args.breakdown, args))
        return
    if args.timeline:
        print(timeline(args))
        return

    started = time.perf_counter()
    cases = [c for c in args.cases if c in CASES]
    throughput = benchmark_throughput(cases, args) if cases else {}
    startup = benchmark_startup(args) if "startup" in args.cases else {}
    sweep = benchmark_sweep(args) if "sweep" in args.cases else {}
    stacked = benchmark_stacked(args) if "stacked" in args.cases else {}
    sweeps = benchmark_sweeps(args) if "sweeps" in args.cases else {}

    print(f"\n## dllab benchmark ({args.device}, {args.precision}, {args.threads} torch thread(s))\n")
    if throughput:
        print("Training throughput, samples/s (medians of", args.repeats, "interleaved repeats)\n")
        print(throughput_tables(throughput))
    if startup:
        print("\nStart-up and memory\n")
        print(startup_table(startup))
    if sweep:
        ok = "ok" if sweep["median_job_overhead_seconds"] <= TARGET_SWEEP_OVERHEAD_SECONDS else "MISS"
        print(
            f"\nSweep of {sweep['jobs']} short digits jobs (basic launcher): {sweep['sweep_seconds']:.1f} s; "
            f"median per-job overhead {sweep['median_job_overhead_seconds']:.2f} s "
            f"(<= {TARGET_SWEEP_OVERHEAD_SECONDS:g} s: {ok}), median training loop {sweep['median_fit_seconds']:.2f} s"
        )
    if stacked:
        print("\nStacked sweeps: whole-sweep wall time, basic launcher / hydra/launcher=stacked (one run each)\n")
        print(stacked_table(stacked))
    if sweeps:
        print(f"\nWhole sweeps (issue 26), medians of {args.repeats} interleaved repeat(s)\n")
        print(sweeps_table(sweeps))
    load = f"load average {machine['load_average_at_start']} at start, {os.getloadavg()[0]:.2f} at end"
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s; {load})")
    if args.json:
        results = {"machine": machine, "throughput": throughput, "startup": startup, "sweep": sweep, "stacked": stacked}
        results["sweeps"] = sweeps
        args.json.write_text(json.dumps(results, indent=1))
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
