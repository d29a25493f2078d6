"""The image loaders on tiny local files in the official formats, the verified download
and its offline error, and image folders with their errors."""

from __future__ import annotations

import io
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from dllab.data import downloaded_images as image_data
from dllab.data import downloads
from dllab.data.datamodule import InMemoryDataModule
from dllab.data.downloads import Remote, fetch
from dllab.data.image_folder import ImageFolder, load_image_folder
from dllab.errors import ConfigError
from tests.makedata import (
    gray_png,
    make_cifar_archive,
    make_cifar_batches,
    make_idx_files,
    make_image_folder,
    md5,
    write_gray16_png,
    write_idx,
)


@pytest.mark.parametrize(("dtype", "shape"), [(np.uint8, (3, 4, 5)), (">i4", (7,)), (">f4", (2, 3))])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path: Path, dtype: str, shape: tuple[int, ...], suffix: str) -> None:
    array = (np.arange(np.prod(shape)) * 3 % 251).astype(dtype).reshape(shape)
    read = image_data.read_idx(write_idx(tmp_path / f"a.idx{suffix}", array))
    assert read.shape == shape
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ConfigError, match=r"bad\.idx: not an IDX file"):
        image_data.read_idx(bad)
    short = write_idx(tmp_path / "short.idx", np.zeros((4, 2), np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(ConfigError, match=r"short.idx: IDX header says shape \(4, 2\) but the file holds"):
        image_data.read_idx(short)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_family_pools_train_and_test(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_idx_files(tmp_path, name, monkeypatch)
    data = image_data.load_idx_dataset(name, tmp_path, download=False)
    images = np.concatenate([arrays["train-images-idx3-ubyte.gz"], arrays["t10k-images-idx3-ubyte.gz"]])
    assert data.x.shape == (180, 784) and data.x.dtype == np.float32
    assert data.image_shape == (1, 28, 28)
    np.testing.assert_allclose(data.x[125], images[125].reshape(-1) / 255.0)
    assert data.y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and data.y.dtype == np.int64
    assert len(data.class_names) == 10
    subset = image_data.load_idx_dataset(name, tmp_path, download=False, n_samples=50, seed=3)
    assert subset.x.shape == (50, 784)
    assert any(np.array_equal(subset.x[0], row) for row in data.x)
    source = image_data.DownloadedImages(name, data_dir=str(tmp_path), download=False, n_samples=50)
    assert source.load(seed=3).x.tolist() == subset.x.tolist()
    assert source.image_shape == data.image_shape and source.mirrored == (name == "fashion_mnist")


def test_cifar10_batches_are_read_as_rgb_planes(tmp_path: Path) -> None:
    x, y = make_cifar_batches(tmp_path / "cifar10")
    data = image_data.load_cifar10(tmp_path, download=False)
    assert data.x.shape == (120, 3072) and data.image_shape == (3, 32, 32)
    np.testing.assert_allclose(data.x, x / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.y, y)
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    # channel planes: the first 1024 values of a row are the red plane
    image = data.x[7].reshape(3, 32, 32)
    assert image[1, 0, 0] == np.float32(x[7, 1024] / 255.0)


def test_cifar10_archive_is_verified_and_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = make_cifar_archive(tmp_path, monkeypatch)
    data = image_data.load_cifar10(tmp_path, download=False)
    assert (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    np.testing.assert_allclose(data.x, x / 255.0, rtol=0, atol=1e-7)


def test_offline_download_says_where_to_put_the_files(tmp_path: Path) -> None:
    # port 9 (discard) on localhost: refused at once, no network involved
    files = [
        Remote("a.gz", ("http://127.0.0.1:9/a.gz",), "0" * 32),
        Remote("b.gz", ("http://127.0.0.1:9/b.gz",), "1" * 32),
    ]
    with pytest.raises(ConfigError) as info:
        fetch(files, tmp_path / "mnist", "mnist")
    message = str(info.value)
    assert message.startswith("data=mnist: cannot download a.gz (http://127.0.0.1:9/a.gz: ")
    assert (
        f"offline? put the files a.gz, b.gz (from http://127.0.0.1:9/) into {(tmp_path / 'mnist').resolve()}" in message
    )
    assert "\n" not in message and not list((tmp_path / "mnist").iterdir())  # no partial file left


def test_the_real_sources_fail_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(downloads.urllib.request, "urlopen", offline)
    with pytest.raises(ConfigError) as info:
        image_data.load_cifar10(tmp_path)
    message = str(info.value)
    assert "data=cifar10: cannot download cifar-10-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: Temporary failure in name resolution" in message
    assert f"into {(tmp_path / 'cifar10').resolve()} (paths.data_dir, or DLLAB_DATA_DIR)" in message
    with pytest.raises(ConfigError, match=r"data=mnist: data\.download=false; offline\? put the files train-images"):
        image_data.load_idx_dataset("mnist", tmp_path, download=False)


def test_download_checks_the_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"the right bytes"
    good = tmp_path / "good"
    good.write_bytes(payload)
    served: list[str] = []

    def serve(url: str, timeout: float):
        served.append(url)
        return io.BytesIO(b"corrupted" if "mirror1" in url else payload)

    monkeypatch.setattr(downloads.urllib.request, "urlopen", serve)
    remote = Remote("f.bin", ("http://mirror1/f.bin", "http://mirror2/f.bin"), md5(good))
    (path,) = fetch([remote], tmp_path / "d", "x")
    assert path.read_bytes() == payload and served == ["http://mirror1/f.bin", "http://mirror2/f.bin"]
    fetch([remote], tmp_path / "d", "x")  # present and verified: not fetched again
    assert len(served) == 2
    path.write_bytes(b"changed")
    with pytest.raises(ConfigError, match=f"data=x: {path} has MD5 .*, expected {md5(good)}; delete it"):
        fetch([remote], tmp_path / "d", "x", download=False)
    only_bad = Remote("g.bin", ("http://mirror1/g.bin",), md5(good))
    with pytest.raises(ConfigError, match=f"http://mirror1/g.bin: MD5 .*, expected {md5(good)}"):
        fetch([only_bad], tmp_path / "d", "x")


def test_image_folder_loads_resized_images(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets")
    (root / "cats" / "notes.txt").write_text("not an image")  # ignored: not PNG/JPEG
    data = load_image_folder(root, image_size=[6, 8], channels=3)
    assert data.x.shape == (24, 3 * 6 * 8) and data.image_shape == (3, 6, 8)
    assert data.class_names == ["cats", "dogs"] and data.y.tolist() == [0] * 12 + [1] * 12
    assert data.x.min() >= 0 and data.x.max() <= 1
    assert data.x[data.y == 0].mean() < 0.3 < 0.7 < data.x[data.y == 1].mean()  # dark cats, bright dogs
    gray = load_image_folder(root, image_size=5, channels=1)
    assert gray.x.shape == (24, 25) and gray.image_shape == (1, 5, 5)


def test_image_folder_datamodule_splits_like_every_dataset(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", per_class=20)
    source = ImageFolder(root=str(root), image_size=8, channels=3, mirror=True)
    dm = InMemoryDataModule(source, batch_size=4)
    dm.setup()
    sizes = {s: len(dm.arrays[s][0]) for s in ("train", "val", "test")}
    assert sizes == {"train": 28, "val": 4, "test": 8}
    assert dm.image_shape == source.image_shape == (3, 8, 8) and dm.input_size == 192 and dm.output_size == 2
    assert source.mirrored and not ImageFolder(root=str(root), mirror=False).mirrored
    assert sorted(np.bincount(dm.arrays["test"][1]).tolist()) == [4, 4]  # stratified


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"data.root={tmp_path / 'nope'}: no such folder"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"needs at least 2 class folders of PNG/JPEG files .*found 1: cats"):
        load_image_folder(tmp_path / "one")
    root = make_image_folder(tmp_path / "pets", per_class=3)
    (root / "birds").mkdir()
    with pytest.raises(ConfigError, match="class folder birds/ holds no PNG/JPEG files"):
        load_image_folder(root)
    (root / "birds").rmdir()
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        load_image_folder(root)
    message = str(info.value)
    assert message.startswith(f"data.root={root}: 2 images cannot be read: ")
    assert f"{root / 'cats' / 'broken.png'} (OSError: " in message
    assert f"{root / 'dogs' / 'empty.jpg'} (UnidentifiedImageError: cannot identify image file 'file')" in message


def test_a_16_bit_image_is_scaled_by_its_own_range(tmp_path: Path) -> None:
    """Pillow's 8-bit conversion clips a 16-bit image at 255: nearly every pixel would be white."""
    root = make_image_folder(tmp_path / "pets", per_class=3)
    gradient = np.tile(np.linspace(0, 65535, 16), (12, 1)).astype(np.uint16)  # dark left, white right
    write_gray16_png(root / "cats" / "0_deep.png", gradient)
    for channels in (1, 3):
        data = load_image_folder(root, image_size=[12, 16], channels=channels)
        deep = data.x[0].reshape(channels, 12, 16)  # cats/0_deep.png sorts first
        assert deep.min() >= 0 and deep.max() <= 1 and (deep >= 1).mean() < 0.1
        np.testing.assert_allclose(deep, np.broadcast_to(gradient / 65535, deep.shape), atol=1e-6)


def test_an_image_over_pillows_limit_is_named(tmp_path: Path) -> None:
    from PIL import Image

    root = make_image_folder(tmp_path / "pets", per_class=3)
    huge = root / "dogs" / "huge.png"
    huge.write_bytes(gray_png(15000, 15000, 1))  # 225 Mpixels of zeros: a few KB
    with pytest.raises(ConfigError) as info:
        load_image_folder(root)
    assert str(info.value) == (
        f"data.root={root}: 1 image cannot be read: {huge} (15000x15000 = 225000000 pixels; Pillow opens at most "
        f"{2 * Image.MAX_IMAGE_PIXELS}, a guard against decompression bombs: resize it)"
    )
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the guard is back
