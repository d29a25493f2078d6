"""Batch augmentation of training images on the training device (kornia), and the
TensorBoard grid that shows what it does.

The data path holds every split as one tensor, so augmentation works on whole
micro-batches: the epoch loop (:mod:`dllab.training.epoch_loop`) hands each training
micro-batch to an :class:`Augmenter`, which undoes the data's scaling (per pixel), applies
the kornia augmentations of the ``augmentation/`` config group to the (C, H, W) images,
clamps to the pixel range, and scales back, keeping the batch's shape. Validation and test
batches never pass through it. The augmenter draws its random numbers from its own generator state,
seeded by the run seed, so a run is reproducible and dropout or shuffling do not change
which augmentations are drawn.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from dllab.data.source import no_images
from dllab.errors import ConfigError

log = logging.getLogger(__name__)

FLIPS = ("RandomHorizontalFlip",)
PIXEL_RANGE = (0.0, 1.0)  # every image loader yields pixels in [0, 1]


class Augmenter:
    """Augments batches of (possibly standardized) images, (N, C, H, W) or flat rows; a plain
    callable, not an ``nn.Module``, so it never enters the model's parameters or checkpoints."""

    def __init__(
        self,
        transforms: nn.Module,
        image_shape: Sequence[int],
        mean: np.ndarray | Tensor | None = None,
        std: np.ndarray | Tensor | None = None,
        seed: int = 0,
    ) -> None:
        self.transforms = transforms
        self.image_shape = tuple(int(s) for s in image_shape)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.seed = seed
        self.rng_states: dict[str, Tensor | None] = {"cpu": _seeded_state(seed), "cuda": None}
        self.device = torch.device("cpu")

    def __call__(self, x: Tensor) -> Tensor:
        """A training micro-batch, augmented (same shape, dtype and device)."""
        with self._own_rng(x.device, self.rng_states, self.seed):
            return self.augment_rows(x)

    @contextlib.contextmanager
    def _own_rng(self, device: torch.device, states: dict[str, Tensor | None], seed: int) -> Iterator[None]:
        """Run with this augmenter's generator states (CPU, and CUDA where kornia samples
        on the GPU), leaving the process's generators as they were."""
        self._to(device)
        cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if cuda else []):
            torch.set_rng_state(states["cpu"] if states["cpu"] is not None else _seeded_state(seed))
            if cuda:
                cuda_state = states["cuda"]
                with torch.cuda.device(device):
                    if cuda_state is None:
                        torch.cuda.manual_seed(seed)
                    else:
                        torch.cuda.set_rng_state(cuda_state)
            yield
            states["cpu"] = torch.get_rng_state()
            if cuda:
                states["cuda"] = torch.cuda.get_rng_state(device)

    def images(self, x: Tensor) -> Tensor:
        """(Scaled) images, as (n, C, H, W) or flat rows, in pixel units, (n, C, H, W)."""
        self._to(x.device)
        x = x.reshape(x.shape[0], -1)  # the scaling's mean and std are per flat pixel
        if self.mean is not None and self.std is not None:
            x = x * self.std + self.mean
        return x.reshape(x.shape[0], *self.image_shape)

    @torch.no_grad()
    def augment_rows(self, x: Tensor) -> Tensor:
        out = self.transforms(self.images(x)).clamp(*PIXEL_RANGE).reshape(x.shape[0], -1)
        if self.mean is not None and self.std is not None:
            out = (out - self.mean) / self.std
        return out.reshape(x.shape).to(x.dtype)

    def preview(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Original and augmented images of rows ``x`` (pixel units), drawn from a generator
        of their own so the preview does not change the training run."""
        with self._own_rng(x.device, {"cpu": None, "cuda": None}, self.seed + 1):
            augmented = self.augment_rows(x)
        return self.images(x).clamp(*PIXEL_RANGE), self.images(augmented).clamp(*PIXEL_RANGE)

    def _to(self, device: torch.device) -> None:
        """Moves the scaling and the transforms' buffers to the data's device, once."""
        if device == self.device:
            return
        self.mean = None if self.mean is None else self.mean.to(device)
        self.std = None if self.std is None else self.std.to(device)
        self.transforms.to(device)
        self.device = device


def _seeded_state(seed: int) -> Tensor:
    return torch.Generator().manual_seed(seed).get_state()


def build_augmenter(
    augmentation: Mapping[str, Any],
    data_name: str,
    image_shape: Sequence[int] | None,
    scaling: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    mirror: bool = False,
) -> Augmenter | None:
    """The augmenter of an ``augmentation/`` config, or None when it lists no transforms.

    ``size: same`` in a transform stands for the data's (H, W); horizontal flips are left
    out unless a mirror image keeps the class (``mirror``: the source's ``mirrored``).
    """
    from hydra.utils import instantiate

    name = augmentation.get("name", "?")
    specs = list(augmentation.get("transforms") or [])
    if not specs:
        return None
    if image_shape is None:
        raise no_images(f"augmentation={name}", data_name, "augmentation works on", "augmentation=none")
    modules = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        target = str(spec.get("_target_", ""))
        if target.rsplit(".", 1)[-1] in FLIPS and not mirror:
            log.info("augmentation=%s: %s left out: data=%s is not mirror-symmetric", name, target, data_name)
            continue
        if spec.get("size") == "same":
            spec["size"] = tuple(image_shape[1:])
        try:
            modules.append(instantiate(spec, _convert_="all"))
        except Exception as err:
            cause = err.__cause__ or err
            raise ConfigError(f"augmentation.transforms[{i}]={target}: {cause}".replace("\n", " ")) from err
    scaling = scaling or {}
    return Augmenter(nn.Sequential(*modules), image_shape, scaling.get("x_mean"), scaling.get("x_std"), seed)


def image_grid(rows: Sequence[Tensor], min_size: int = 32, gap: int = 1) -> Tensor:
    """Rows of (n, C, H, W) images as one (C, H', W') picture, small images enlarged."""
    scale = max(1, math.ceil(min_size / rows[0].shape[-2]))
    lines = []
    for images in rows:
        images = images.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        images = nn.functional.pad(images, (gap, gap, gap, gap), value=0.5)
        lines.append(torch.cat(list(images), dim=-1))
    return torch.cat(lines, dim=-2)


class AugmentationPreview(L.Callback):
    """At the start of training, logs a grid of training images to TensorBoard: the
    originals in the top row, their augmented versions below."""

    def __init__(self, n_images: int = 16, tag: str = "augmentation/original_vs_augmented") -> None:
        self.n_images = n_images
        self.tag = tag
        self.grid: Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        augmenter = getattr(pl_module, "augment", None)
        datamodule: Any = getattr(trainer, "datamodule", None)
        if not isinstance(augmenter, Augmenter) or datamodule is None or not trainer.is_global_zero:
            return
        rows = torch.from_numpy(datamodule.arrays["train"][0][: self.n_images]).to(pl_module.device)
        original, augmented = augmenter.preview(rows)
        self.grid = image_grid([original.cpu(), augmented.cpu()])
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.tag, self.grid, global_step=0)
