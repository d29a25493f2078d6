"""Tiny data files in the exact on-disk formats dllab reads (IDX, CIFAR-10 pickle batches,
image folders, CSV), so no test touches the network."""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from dllab.data import downloaded_images as image_data
from dllab.data.downloads import Remote

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file as the MNIST authors describe it: magic (0, 0, type, ndim), big-endian dims, data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def idx_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def make_idx_files(data_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch, n_train=120, n_test=60) -> dict:
    """MNIST-family files in data_dir/name, registered as the expected checksums."""
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    train, test = idx_images(n_train, 0), idx_images(n_test, 1)
    arrays = dict(zip(IDX_NAMES, (train[0], train[1], test[0], test[1]), strict=True))
    checksums = {file: md5(write_idx(folder / file, array)) for file, array in arrays.items()}
    urls, _ = image_data.IDX_FILES[name]
    monkeypatch.setitem(image_data.IDX_FILES, name, (urls, checksums))
    return arrays


def make_cifar_batches(folder: Path, per_batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta (pickled dicts of bytes keys)."""
    batches = folder / image_data.CIFAR10_FOLDER
    batches.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i, name in enumerate(image_data.CIFAR10_BATCHES):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        content = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}
        (batches / name).write_bytes(pickle.dumps(content, protocol=2))
        xs.append(data)
        ys.append(labels)
    names = [
        n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    ]
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    return np.concatenate(xs), np.concatenate(ys)


def make_cifar_archive(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray]:
    """cifar-10-python.tar.gz in data_dir/cifar10 (not extracted), registered as the expected checksum."""
    staging = data_dir / "staging"
    x, y = make_cifar_batches(staging)
    folder = data_dir / "cifar10"
    folder.mkdir(parents=True)
    archive = folder / image_data.CIFAR10_ARCHIVE.name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / image_data.CIFAR10_FOLDER, arcname=image_data.CIFAR10_FOLDER)
    remote = Remote(archive.name, image_data.CIFAR10_ARCHIVE.urls, md5(archive))
    monkeypatch.setattr(image_data, "CIFAR10_ARCHIVE", remote)
    return x, y


def make_image_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (20, 14)) -> Path:
    """root/cats and root/dogs: PNG and JPEG files of different sizes; cats dark, dogs bright."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, (name, level) in enumerate((("cats", 40), ("dogs", 210))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (size[1] + i % 3, size[0], 3)), 0, 255).astype(np.uint8)
            suffix = ".png" if (i + label) % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{name}_{i}{suffix}")
    return root


def make_table(path: Path, n: int = 60) -> Path:
    """A small classification table: two numeric features, a categorical one, a string target."""
    rng = np.random.default_rng(0)
    lines = ["height,weight,colour,species"]
    for i in range(n):
        big = i % 2
        lines.append(
            f"{rng.normal(10 + 5 * big, 1):.3f},{rng.normal(3 + 2 * big, 0.5):.3f},"
            f"{('red', 'green', 'blue')[i % 3]},{('small', 'large')[big]}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def local_data_overrides(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Overrides that make data=<name> load tiny local files (none for generated/bundled sets)."""
    data_dir = tmp_path / "data"
    if name in ("mnist", "fashion_mnist"):
        make_idx_files(data_dir, name, monkeypatch)
    elif name == "cifar10":
        make_cifar_batches(data_dir / "cifar10")
    elif name == "image_folder":
        return [f"data.root={make_image_folder(tmp_path / 'images')}", "data.image_size=8", "data.batch_size=4"]
    elif name == "csv":
        return [f"data.path={make_table(tmp_path / 'table.csv')}", "data.target=species", "data.batch_size=4"]
    else:
        return []
    return [f"data.data_dir={data_dir}", "data.download=false", "data.batch_size=4"]


@functools.cache
def gray_png(width: int, height: int, bit_depth: int, rows: bytes | None = None) -> bytes:
    """A grayscale PNG file made chunk by chunk (zlib, no Pillow): ``rows`` are the filtered
    scanlines, or zeros. Zeros compress to almost nothing: a 225-Mpixel image is a few KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if rows is None:
        line = b"\0" * (1 + (width * bit_depth + 7) // 8)  # filter byte 0, then the pixels
        packer = zlib.compressobj(9)
        data = b"".join(packer.compress(line) for _ in range(height)) + packer.flush()
    else:
        data = zlib.compress(rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)  # colour type 0: gray
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def write_gray16_png(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit grayscale PNG of ``pixels`` (uint16, height x width)."""
    scanlines = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    path.write_bytes(gray_png(pixels.shape[1], pixels.shape[0], 16, scanlines))
    return path
