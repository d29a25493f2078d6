"""The downloaded image sets as a source: MNIST and Fashion-MNIST (IDX files) and CIFAR-10
(python pickle batches), as flat float32 rows in [0, 1] plus their (C, H, W) shape, fetched
into ``data.data_dir`` by :mod:`dllab.data.downloads`.

The readers are small on purpose (no torchvision: it forces a multi-GB CUDA torch). The
official train and test files are pooled and split by ``data.val_fraction`` and
``data.test_fraction`` like every dataset, so all data goes through the same split,
scaling and tensor path in :mod:`dllab.data.datamodule`.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllab.catalog import CLASSIFICATION
from dllab.data.dataset import Dataset
from dllab.data.downloads import Remote, fetch
from dllab.data.source import Source, fail
from dllab.errors import ConfigError
from dllab.field_checks import is_int

MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

# File names and MD5 checksums as published by the datasets' authors (train, then test).
IDX_FILES = {
    "mnist": (
        MNIST_URLS,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion_mnist": (
        FASHION_URLS,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
}
CIFAR10_ARCHIVE = Remote("cifar-10-python.tar.gz", (CIFAR10_URL,), "c58f30108f718f92721af3b95e74349a")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array of its stored shape."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) != 4 + 4 * ndim + count * dtype.itemsize:
        raise ConfigError(f"{path}: IDX header says shape {shape} but the file holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype, count, offset=4 + 4 * ndim).reshape(shape)


def load_idx_dataset(
    name: str, data_dir: str | Path, download: bool = True, n_samples: int | None = None, seed: int = 0
) -> Dataset:
    """MNIST or Fashion-MNIST: 28x28 grayscale, 10 classes, train and test files pooled."""
    urls, checksums = IDX_FILES[name]
    files = [Remote(file, tuple(u + file for u in urls), md5) for file, md5 in checksums.items()]
    paths = fetch(files, Path(data_dir) / name, name, download)
    images = np.concatenate([read_idx(paths[0]), read_idx(paths[2])])
    labels = np.concatenate([read_idx(paths[1]), read_idx(paths[3])]).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ConfigError(f"data={name}: image files hold {images.shape}, label files {labels.shape}")
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _subset(Dataset(x, labels, CLASSIFICATION, [], CLASS_NAMES[name], (1, *images.shape[1:])), n_samples, seed)


def load_cifar10(data_dir: str | Path, download: bool = True, n_samples: int | None = None, seed: int = 0) -> Dataset:
    """CIFAR-10: 32x32 RGB, 10 classes, the five training batches and the test batch pooled."""
    folder = Path(data_dir) / "cifar10"
    batches = folder / CIFAR10_FOLDER
    if not all((batches / b).is_file() for b in (*CIFAR10_BATCHES, "batches.meta")):
        (archive,) = fetch([CIFAR10_ARCHIVE], folder, "cifar10", download)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
    x_parts, y_parts = [], []
    for batch in CIFAR10_BATCHES:
        content = _unpickle(batches / batch)
        x_parts.append(np.asarray(content[b"data"], dtype=np.uint8).reshape(-1, 3 * 32 * 32))
        y_parts.append(np.asarray(content[b"labels"], dtype=np.int64))
    names = [n.decode() for n in _unpickle(batches / "batches.meta")[b"label_names"]]
    x = np.concatenate(x_parts).astype(np.float32) / 255.0  # rows are R, G, B planes: (3, 32, 32)
    return _subset(Dataset(x, np.concatenate(y_parts), CLASSIFICATION, [], names, (3, 32, 32)), n_samples, seed)


def _unpickle(path: Path) -> dict:
    with path.open("rb") as stream:
        return pickle.load(stream, encoding="bytes")  # the official format (checksum-verified archive)


def _subset(data: Dataset, n_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n_samples`` (all when None): quicker runs on a CPU."""
    if n_samples is None or n_samples >= len(data.x):
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data.x), n_samples, replace=False))
    data.x, data.y = data.x[keep], data.y[keep]
    return data


# name -> (C, H, W) of its images
SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
MIRRORED = ("fashion_mnist", "cifar10")  # a mirrored 7 is no 7; a mirrored shirt or ship stays one


@dataclass
class DownloadedImages(Source):
    """MNIST, Fashion-MNIST or CIFAR-10 (``name`` in SHAPES), official train and test files
    pooled, from ``data_dir`` (fetched there first if ``download``); a seeded random subset of
    ``n_samples`` images when set."""

    data_dir: str = "data"
    download: bool = True
    n_samples: int | None = None

    @property
    def task(self) -> str:
        return CLASSIFICATION

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return SHAPES.get(self.name)

    @property
    def mirrored(self) -> bool:
        return self.name in MIRRORED

    def check(self) -> None:
        if self.name not in SHAPES:
            raise fail("data.name", self.name, f"unknown downloaded image set; choose one of {', '.join(SHAPES)}")
        n = self.n_samples
        if n is not None and (not is_int(n) or n < 10):
            raise fail("data.n_samples", n, "must be null (all images) or an integer >= 10")
        if not isinstance(self.download, bool):
            raise fail("data.download", self.download, "must be true or false")

    def load(self, seed: int) -> Dataset:
        if self.name == "cifar10":
            return load_cifar10(self.data_dir, self.download, self.n_samples, seed)
        return load_idx_dataset(self.name, self.data_dir, self.download, self.n_samples, seed)
