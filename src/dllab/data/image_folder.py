"""A folder of one's own images as a source: one sub-folder per class of PNG/JPEG files,
each image converted to ``channels`` and resized to ``image_size``, as flat float32 rows
in [0, 1]."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllab.catalog import CLASSIFICATION
from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail, require_text
from dllab.errors import ConfigError
from dllab.field_checks import is_int
from dllab.memory_checks import check_fits_memory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def height_width(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` (one number: square, or [height, width]) as (height, width)."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(s) for s in image_size)
    return height, width


# What Pillow raises for a file it cannot read: not an image, truncated, broken chunks.
UNREADABLE = (OSError, SyntaxError, EOFError, ValueError, IndexError, struct.error)
# Pillow's modes of 16-bit grayscale PNGs (I;16 from Pillow 10 on, I before): values up to 65535.
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_image(file: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """The image as float32 (height, width, channels) in [0, 1], resized to ``size`` (width,
    height). A 16-bit image is scaled by its own range: converted to 8 bits, as Pillow does,
    every value above 255 would be white."""
    from PIL import Image

    with Image.open(file) as opened:
        if opened.mode in DEEP_MODES:
            gray = opened.convert("F").resize(size, Image.Resampling.BILINEAR)
            pixels = np.clip(np.asarray(gray, dtype=np.float32) / 65535.0, 0.0, 1.0)[..., None]
            return np.repeat(pixels, channels, axis=2)
        image = opened.convert({1: "L", 3: "RGB"}[channels]).resize(size, Image.Resampling.BILINEAR)
        return (np.asarray(image, dtype=np.float32) / 255.0).reshape(size[1], size[0], channels)


def too_large(file: Path) -> str:
    """Why Pillow refuses to open ``file``: its size, read from the header, over Pillow's limit."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None  # Pillow refuses images only under a limit
    Image.MAX_IMAGE_PIXELS = None  # open reads only the header; the guard is back before anything is decoded
    try:
        with Image.open(file) as opened:
            width, height = opened.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return (
        f"{width}x{height} = {width * height} pixels; Pillow opens at most {2 * limit}, "
        "a guard against decompression bombs: resize it"
    )


def load_image_folder(root: str | Path, image_size: int | Sequence[int] = 32, channels: int = 3) -> Dataset:
    """One sub-folder per class of PNG/JPEG files, each resized to ``image_size``.

    Every unreadable image (a broken file, one over Pillow's decompression-bomb limit) is
    reported by path in one error, so all broken files are found in one run, not one per run.
    """
    from PIL import Image

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"data.root={root}: no such folder (one sub-folder per class of PNG/JPEG files)")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ConfigError(
            f"data.root={root}: needs at least 2 class folders of PNG/JPEG files (e.g. dogs/, cats/); "
            f"found {len(classes)}: {', '.join(p.name for p in classes) or 'none'}"
        )
    height, width = height_width(image_size)
    rows, labels, broken = [], [], []
    for label, class_dir in enumerate(classes):
        files = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(f"data.root={root}: class folder {class_dir.name}/ holds no PNG/JPEG files")
        for file in files:
            try:
                pixels = read_image(file, (width, height), channels)
            except Image.DecompressionBombError:
                broken.append(f"{file} ({too_large(file)})")
                continue
            except UNREADABLE as err:
                broken.append(f"{file} ({type(err).__name__}: {str(err).replace(str(file), 'file')})")
                continue
            rows.append(pixels.transpose(2, 0, 1).reshape(-1))
            labels.append(label)
    if broken:
        many = len(broken) > 1
        raise ConfigError(f"data.root={root}: {len(broken)} image{'s' * many} cannot be read: " + ", ".join(broken))
    x = np.stack(rows).astype(np.float32)
    names = [p.name for p in classes]
    return Dataset(x, np.asarray(labels, dtype=np.int64), CLASSIFICATION, [], names, (channels, height, width))


@dataclass
class ImageFolder(Source):
    """The images under ``root`` (one sub-folder per class), resized to ``image_size`` with
    ``channels`` (1 or 3); ``mirror`` says whether a mirror image keeps its class."""

    name: str = "image_folder"
    root: str | None = None
    image_size: int | Sequence[int] = 32
    channels: int = 3
    mirror: bool = True

    @property
    def task(self) -> str:
        return CLASSIFICATION

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return (self.channels, *height_width(self.image_size))

    @property
    def mirrored(self) -> bool:
        return self.mirror

    def check(self) -> None:
        require_text("data.root", self.root, "PATH (a folder with one sub-folder of PNG/JPEG files per class)")
        size = self.image_size
        sizes = list(size) if isinstance(size, (list, tuple)) else [size]
        if len(sizes) not in (1, 2) or not all(is_int(s) and s >= 1 for s in sizes):
            raise fail("data.image_size", size, "must be a positive integer or [height, width]")
        if self.channels not in (1, 3):
            raise fail("data.channels", self.channels, "choose 1 (grayscale) or 3 (RGB)")
        if not isinstance(self.mirror, bool):
            raise fail("data.mirror", self.mirror, "must be true or false")
        self._check_memory()

    def _check_memory(self) -> None:
        """Images resized to a size whose float32 rows (and their stacked copy) cannot fit the
        machine's memory are refused before the first one is read."""
        folder = Path(str(self.root)).expanduser()
        if not folder.is_dir():
            return  # load says so
        classes = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        files = sum(1 for c in classes for p in c.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        height, width = height_width(self.image_size)
        pixels = height * width * self.channels
        check_fits_memory(
            "data.image_size",
            self.image_size,
            files * pixels * 4 * 2,
            f"{files} images x {height}x{width}x{self.channels} values x 4 bytes x 2 (the rows and the stacked set)",
            "use a smaller data.image_size",
        )

    def load(self, seed: int) -> Dataset:
        assert self.root is not None  # check() refuses an unset root
        return load_image_folder(self.root, self.image_size, self.channels)
