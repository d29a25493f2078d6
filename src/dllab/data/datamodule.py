"""In-memory LightningDataModule: seeded stratified splits, train-only scaling, and
batches sliced from tensors that live on the training device.

The train "loader" yields one :class:`EpochBatch` per epoch: the whole split plus a
shuffled index order. The module's ``training_step`` runs an epoch loop
(:mod:`dllab.training.epoch_loop`) that takes micro-batches from it, so the Trainer's
per-step bookkeeping is paid once per epoch, not once per batch. There is no per-sample ``__getitem__`` and no
collate: this is the framework's only data path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch import Tensor

from dllab.catalog import CLASSIFICATION
from dllab.data.dataset import Dataset
from dllab.data.source import Source, split_data_config
from dllab.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class EpochBatch(NamedTuple):
    """One epoch of training data: all samples, the order to visit them in, the micro-batch size."""

    x: Tensor
    y: Tensor
    order: Tensor
    batch_size: int


class TrainEpochs:
    """The train loader: one :class:`EpochBatch` per epoch, shuffled by (seed, epoch).

    Seeding by epoch (not by a running generator) keeps the order the same after a
    resume. Under DDP each rank gets an equal-length shard of the same permutation.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int],
        shuffle: bool = True,
        limit: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.limit = limit
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return 1

    def order(self, epoch: int) -> Tensor:
        n = self.x.shape[0]
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            order = order.repeat(2)[: per_rank * self.world_size][self.rank :: self.world_size]
        if self.limit is not None:
            order = order[: self.limit]
        return order.to(self.x.device)

    def __iter__(self) -> Iterator[EpochBatch]:
        yield EpochBatch(self.x, self.y, self.order(self.epoch()), self.batch_size)


class EvalBatches:
    """Validation/test loader: large contiguous slices of the split (full batch when it fits)."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(self.x.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.x.shape[0], self.batch_size):
            yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]


def _limit(value: float | int, n: int, batch_size: int, field: str) -> int:
    """Lightning's limit_*_batches semantics in samples: a float is a fraction, an int a batch count."""
    count = int(value * n) if isinstance(value, float) else int(value) * batch_size
    count = min(count, n)
    if value and count < 1:
        raise ConfigError(f"trainer.{field}={value}: selects no sample of {n}; use a larger value")
    return count


def build_datamodule(data: Mapping[str, Any], **trainer_limits: Any) -> InMemoryDataModule:
    """The DataModule of a data config: ``_target_`` and the source's keys build the source,
    the DataModule's keys (batch_size, ...) and the trainer's ``limit_*_batches`` and
    ``overfit_batches`` go to :class:`InMemoryDataModule`. Configs saved before sources are
    upgraded first (:func:`dllab.data.source.upgrade_data_config`)."""
    source, own = split_data_config(data)
    return InMemoryDataModule(source, **own, **trainer_limits)


class InMemoryDataModule(L.LightningDataModule):
    """Loads a source's dataset, splits it (seeded, stratified for classification), fits the
    scaling on the training split only, and keeps every split as one tensor on the
    training device."""

    def __init__(
        self,
        source: Source,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 42,
        standardize: bool = True,
        eval_batch_size: int = 8192,
        limit_train_batches: float | int = 1.0,
        limit_val_batches: float | int = 1.0,
        limit_test_batches: float | int = 1.0,
        overfit_batches: float | int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.data_name = source.name
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.standardize = standardize
        self.eval_batch_size = eval_batch_size
        self.limits = {"train": limit_train_batches, "val": limit_val_batches, "test": limit_test_batches}
        self.overfit_batches = overfit_batches
        self.dataset: Dataset | None = None
        self.points: dict[str, np.ndarray] = {}  # the dataset's raw points per split, when it has them
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.scaling: dict[str, np.ndarray] = {}
        self._tensors: dict[str, tuple[Tensor, Tensor]] = {}

    # --- what the model needs to know -------------------------------------------------
    @property
    def task(self) -> str:
        return self._data.task

    @property
    def input_size(self) -> int:
        return int(self._data.x.shape[1])

    @property
    def output_size(self) -> int:
        return self._data.num_outputs

    @property
    def class_names(self) -> list[str]:
        return self._data.class_names

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) when the rows are flattened images, else None."""
        return self._data.image_shape

    @property
    def _data(self) -> Dataset:
        if self.dataset is None:
            self.setup()
        assert self.dataset is not None
        return self.dataset

    # --- Lightning hooks --------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.source.check()
        data = self.source.load(self.seed)
        self._check_values(data)
        index = self._split_indices(data)
        if self.overfit_batches:
            keep = _limit(self.overfit_batches, len(index["train"]), self.batch_size, "overfit_batches")
            index["train"] = index["train"][:keep]
            index["val"] = index["train"]
        self.arrays = {split: (data.x[i], data.y[i]) for split, i in index.items()}
        if data.points is not None:
            self.points = {split: data.points[i] for split, i in index.items()}
        if self.standardize:
            self._standardize(data.task)
        # images reach the network as (N, C, H, W) (a view of the rows; the MLP flattens them)
        shape = (-1, *data.image_shape) if data.image_shape else (-1, data.x.shape[1])
        self._tensors = {s: (torch.from_numpy(x).view(shape), torch.from_numpy(y)) for s, (x, y) in self.arrays.items()}
        for split in SPLITS:  # bad limits are config errors before anything is built, not inside fit
            _limit(self.limits[split], len(self.arrays[split][0]), self.batch_size, f"limit_{split}_batches")
        self.dataset = data

    def train_dataloader(self) -> TrainEpochs:
        x, y = self.tensors("train")
        limit = _limit(self.limits["train"], x.shape[0], self.batch_size, "limit_train_batches")
        trainer = self.trainer
        return TrainEpochs(
            x,
            y,
            self.batch_size,
            self.seed,
            epoch=lambda: trainer.current_epoch if trainer is not None else 0,
            shuffle=not self.overfit_batches,
            limit=limit if limit < x.shape[0] else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def val_dataloader(self) -> EvalBatches:
        return self._eval_loader("val")

    def test_dataloader(self) -> EvalBatches:
        return self._eval_loader("test")

    def predict_dataloader(self) -> EvalBatches:
        return self._eval_loader("test")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The splits already live on the device (see ``tensors``): batches pass through.
        Lightning's default walks each batch and calls ``.to`` on every tensor, every epoch."""
        tensors = batch[:-1] if isinstance(batch, EpochBatch) else batch
        if isinstance(batch, tuple) and all(isinstance(t, Tensor) and t.device == device for t in tensors):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """A split's (scaled) inputs and targets as the network sees them (images as (N, C, H, W)),
        on the training device (the CPU before a Trainer is attached), moved there once."""
        self.setup()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        x, y = self._tensors[split]
        if x.device != device:
            x, y = x.to(device), y.to(device)
            self._tensors[split] = (x, y)
        return x, y

    # --- helpers ----------------------------------------------------------------------
    def _eval_loader(self, split: str) -> EvalBatches:
        x, y = self.tensors(split)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            x, y = x[trainer.global_rank :: trainer.world_size], y[trainer.global_rank :: trainer.world_size]
        limit = _limit(self.limits[split], x.shape[0], self.batch_size, f"limit_{split}_batches")
        return EvalBatches(x[:limit], y[:limit], self.eval_batch_size)

    def _check_values(self, data: Dataset) -> None:
        """Every value finite, images of the shape the source promised (model checks rely on
        it), and two classes at least (the metrics need them; a source of one's own may not check)."""
        promised = self.source.image_shape
        if promised is not None and data.image_shape != tuple(promised):
            raise ConfigError(
                f"data={self.data_name}: {type(self.source).__name__}.image_shape is {promised}, "
                f"the loaded images are {data.image_shape}"
            )
        present = np.unique(data.y) if data.task == CLASSIFICATION else None
        if present is not None and len(present) == 1:
            label = data.class_names[present[0]] if present[0] < len(data.class_names) else present[0]
            raise ConfigError(
                f"data={self.data_name}: every sample is of one class ({label}); classification needs 2 or more classes"
            )
        bad = ~np.isfinite(data.x).all(axis=1)
        if data.y.dtype.kind == "f":
            bad |= ~np.isfinite(data.y.reshape(len(data.y), -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise ConfigError(f"data={self.data_name}: {int(bad.sum())} rows hold NaN or inf values (rows {rows}...)")

    def _split_indices(self, data: Dataset) -> dict[str, np.ndarray]:
        from sklearn.model_selection import train_test_split

        n = len(data.x)
        index = np.arange(n)
        stratify = data.y if data.task == CLASSIFICATION else None
        sizes = {
            "test": round(n * self.test_fraction),
            "val": round(n * self.val_fraction),
        }
        sizes["train"] = n - sizes["test"] - sizes["val"]
        for split, size in sizes.items():
            if size < 1:
                raise ConfigError(
                    f"data.{split}_fraction: leaves {size} of {n} samples in the {split} split; "
                    "choose fractions so that every split gets samples (val+test < 1)"
                    if split != "train"
                    else f"data.val_fraction + data.test_fraction = "
                    f"{self.val_fraction + self.test_fraction}: leaves no training samples of {n}"
                )
        try:
            rest, test = train_test_split(index, test_size=sizes["test"], random_state=self.seed, stratify=stratify)
            train, val = train_test_split(
                rest,
                test_size=sizes["val"],
                random_state=self.seed,
                stratify=None if stratify is None else stratify[rest],
            )
        except ValueError as err:  # too few samples of a class to stratify
            raise ConfigError(f"data={self.data_name}: cannot make stratified splits: {err}") from err
        if self.batch_size > len(train):
            raise ConfigError(
                f"data.batch_size={self.batch_size}: larger than the training split ({len(train)} samples)"
            )
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def _standardize(self, task: str) -> None:
        """Scale features (and regression targets) with statistics of the training split only."""
        x_train, y_train = self.arrays["train"]
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        self.scaling = {"x_mean": mean, "x_std": std}
        if task != CLASSIFICATION:
            y_std = y_train.std(0)
            self.scaling |= {"y_mean": y_train.mean(0), "y_std": np.where(y_std > 0, y_std, 1.0)}
        for split, (x, y) in self.arrays.items():
            x = ((x - mean) / std).astype(np.float32)
            if task != CLASSIFICATION:
                y = ((y - self.scaling["y_mean"]) / self.scaling["y_std"]).astype(np.float32)
            self.arrays[split] = (x, y)

    def summary(self, num_parameters: int) -> list[str]:
        """Lines describing the splits, classes and the samples-per-parameter ratio."""
        data = self._data
        n_train = len(self.arrays["train"][0])
        lines = [
            f"data={self.data_name} ({data.task}): {data.x.shape[1]} features"
            + (f", images {data.image_shape}" if data.image_shape else ""),
            "samples: " + ", ".join(f"{s} {len(self.arrays[s][0])}" for s in SPLITS),
        ]
        if data.task == CLASSIFICATION:
            shares = {}
            for split in SPLITS:
                counts = np.bincount(self.arrays[split][1], minlength=len(data.class_names))
                shares[split] = (counts, counts / max(counts.sum(), 1))
            even = 1 / max(len(data.class_names), 1)
            if all(np.abs(share - even).max() <= 0.02 for _, share in shares.values()):
                # a balanced set in one line; the counts per split only where they tell something
                names = ", ".join(map(str, data.class_names))
                lines.append(f"classes ({len(data.class_names)}): {names}; balanced in every split ({even:.0%} each)")
            else:
                for split, (counts, share) in shares.items():
                    shown = zip(data.class_names, counts, share, strict=True)
                    lines.append(f"classes in {split}: " + ", ".join(f"{c} {n} ({p:.0%})" for c, n, p in shown))
        ratio = n_train / max(num_parameters, 1)
        lines.append(f"training samples per model parameter: {ratio:.2f} ({n_train} / {num_parameters})")
        if ratio < 10:
            lines.append(
                "warning: fewer than 10 training samples per parameter (rule of thumb); "
                "expect overfitting, or use a smaller model or more data"
            )
        return lines
