"""Augmentation: training micro-batches only (validation and test unchanged bit for bit),
shapes and pixel ranges kept, seeded, refused for non-image data, every option builds;
the end-to-end run logs the original-vs-augmented grid to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from dllab.checks import check_config
from dllab.data.augmentation import AugmentationPreview, Augmenter, build_augmenter, image_grid
from dllab.data.datamodule import InMemoryDataModule
from dllab.data.sklearn_sets import SklearnSet
from dllab.errors import ConfigError
from dllab.runs.config import plain
from dllab.training.module import ClassificationModule
from tests.conftest import bare_trainer, mlp, run_cli, run_dirs

LIGHT = {
    "name": "light",
    "transforms": [
        {"_target_": "kornia.augmentation.RandomAffine", "degrees": 20, "translate": [0.2, 0.2], "p": 1.0},
        {"_target_": "kornia.augmentation.RandomBrightness", "brightness": [0.7, 1.3], "p": 1.0},
        {"_target_": "kornia.augmentation.RandomHorizontalFlip", "p": 0.5},
    ],
}


def digits() -> InMemoryDataModule:
    dm = InMemoryDataModule(SklearnSet("digits"), batch_size=64, seed=0, standardize=True)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def dm() -> InMemoryDataModule:
    return digits()


def test_augmenter_keeps_shapes_and_pixel_range(dm: InMemoryDataModule) -> None:
    augmenter = build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=1)
    assert augmenter is not None
    x = torch.from_numpy(dm.arrays["train"][0][:50])
    out = augmenter(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    pixels = augmenter.images(out)
    assert pixels.shape == (50, 1, 8, 8)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # clamped in pixel units, then rescaled
    assert torch.allclose(augmenter.images(x).clamp(0, 1), augmenter.images(x), atol=1e-5)


def test_augmenter_is_seeded_and_leaves_the_global_rng_alone(dm: InMemoryDataModule) -> None:
    x = torch.from_numpy(dm.arrays["train"][0][:32])
    first, second, other = (build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=s) for s in (7, 7, 8))
    assert first is not None and second is not None and other is not None
    state = torch.get_rng_state()
    a1, a2 = first(x), first(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a1, second(x)) and torch.equal(a2, second(x))  # same seed, same sequence
    assert not torch.equal(a1, a2)  # the sequence moves on
    assert not torch.equal(a1, other(x))


def test_only_training_batches_are_augmented(dm: InMemoryDataModule) -> None:
    torch.manual_seed(0)
    module = ClassificationModule(dm.input_size, dm.output_size, net=mlp([16]))
    augmenter = build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=0)
    assert augmenter is not None
    augmented: list[Tensor] = []

    def spy(x: Tensor) -> Tensor:
        out = augmenter(x)
        augmented.append(out)
        return out

    module.augment = spy
    seen: list[tuple[bool, Tensor]] = []
    module.net.register_forward_pre_hook(lambda net, args: seen.append((net.training, args[0].clone())))
    trainer = bare_trainer(num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    train_inputs = [x for training, x in seen if training]
    eval_inputs = [x for training, x in seen if not training]
    n_train = len(dm.arrays["train"][0])
    assert len(augmented) == len(train_inputs) == -(-n_train // 64)
    assert all(torch.equal(a, b) for a, b in zip(augmented, train_inputs, strict=True))
    val, test = (torch.from_numpy(dm.arrays[s][0]) for s in ("val", "test"))
    assert eval_inputs[0].shape[1:] == (1, 8, 8)  # images reach the network as (N, C, H, W)
    assert torch.equal(torch.cat(eval_inputs).flatten(1), torch.cat([val, test]))  # bit for bit


def test_augmentation_is_refused_for_data_without_images(make_cfg) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(make_cfg("data=iris", "augmentation=light"))
    assert str(info.value) == (
        "augmentation=light: data=iris holds no images; augmentation works on image data "
        "(digits, mnist, fashion_mnist, cifar10, image_folder); use augmentation=none"
    )
    with pytest.raises(ConfigError, match="augmentation=light: data=wine holds no images"):
        build_augmenter(LIGHT, "wine", None)
    check_config(make_cfg("data=iris", "augmentation=none"))


@pytest.mark.parametrize("name", ["none", "light", "strong"])
def test_every_augmentation_option_builds(name: str, make_cfg, dm: InMemoryDataModule) -> None:
    cfg = make_cfg("data=digits", f"augmentation={name}")
    check_config(cfg)
    augmenter = build_augmenter(plain(cfg.augmentation), "digits", dm.image_shape, dm.scaling, seed=0)
    if name == "none":
        assert augmenter is None
        return
    assert augmenter is not None
    kinds = [type(m).__name__ for m in augmenter.transforms]
    assert "RandomHorizontalFlip" not in kinds  # digits: a mirrored 2 is no 2
    assert "RandomAffine" in kinds
    x = torch.from_numpy(dm.arrays["train"][0][:16])
    assert augmenter(x).shape == x.shape
    mirrored = build_augmenter(plain(cfg.augmentation), "cifar10", (3, 32, 32), seed=0, mirror=True)
    assert mirrored is not None and "RandomHorizontalFlip" in [type(m).__name__ for m in mirrored.transforms]
    assert mirrored(torch.rand(4, 3 * 32 * 32)).shape == (4, 3072)


def test_bad_transform_parameters_name_the_entry() -> None:
    bad = {"name": "mine", "transforms": [{"_target_": "kornia.augmentation.RandomAffine", "degrees": -5}]}
    with pytest.raises(ConfigError, match=r"augmentation.transforms\[0\]=kornia.augmentation.RandomAffine: "):
        build_augmenter(bad, "digits", (1, 8, 8))


def test_grid_shows_originals_above_augmented() -> None:
    augmenter = Augmenter(nn.Sequential(), (1, 8, 8))
    x = torch.rand(5, 64)
    original, augmented = augmenter.preview(x)
    grid = image_grid([original, augmented])
    assert grid.shape == (1, 2 * (32 + 2), 5 * (32 + 2))  # 8x8 enlarged 4 times, 1 px gaps
    assert torch.equal(grid[0, 1:33:4, 1:33:4], x[0].reshape(8, 8))
    assert isinstance(AugmentationPreview().grid, type(None))


def test_end_to_end_digits_light_logs_the_grid(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli(
        "dllab-train", "data=digits", "augmentation=light", "trainer.max_epochs=2", "threads=1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2 and metrics["test"]["test/acc"] > 0.3
    assert "RandomHorizontalFlip left out: data=digits is not mirror-symmetric" in (run_dir / "train.log").read_text()
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 4})
    events.Reload()
    assert "augmentation/original_vs_augmented" in events.Tags()["images"]
    image = events.Images("augmentation/original_vs_augmented")[0]
    assert (image.height, image.width) == (2 * 34, 16 * 34)


def test_augmentation_draws_continue_after_a_checkpoint() -> None:
    """The augmenter's generator state travels in the module's checkpoint, so a resumed run
    draws the augmentations the uninterrupted run would have drawn."""
    from dllab.training.module import ClassificationModule

    dm = InMemoryDataModule(SklearnSet("digits"), seed=0)
    dm.setup()
    x = torch.from_numpy(dm.arrays["train"][0][:16])
    running = ClassificationModule(64, 10)
    running.augment = build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=3)
    running.augment(x)  # some epochs of draws
    checkpoint: dict = {}
    running.on_save_checkpoint(checkpoint)
    expected = running.augment(x)

    resumed = ClassificationModule(64, 10)
    resumed.augment = build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=3)
    resumed.on_load_checkpoint(checkpoint)
    assert torch.equal(resumed.augment(x), expected)
    fresh = build_augmenter(LIGHT, "digits", dm.image_shape, dm.scaling, seed=3)
    assert not torch.equal(fresh(x), expected)  # without the saved state the draws differ
