"""The data group's own fields (batch sizes, split fractions, scaling, the split's seed) and
augmentation's, checked torch-free before anything is loaded; each source checks its own keys
(:meth:`dllab.data.source.Source.check`)."""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig

from dllab.data.source import no_images, source_of
from dllab.errors import ConfigError
from dllab.field_checks import (
    TEXT,
    apply,
    check_seed,
    fail,
    is_int,
    is_number,
    unknown_keys,
)


def check_data(data: DictConfig) -> None:
    """The DataModule's keys, then the source: its ``_target_``, no key that neither takes,
    and the source's own ``check`` (built from the config, nothing loaded)."""
    for field in ("batch_size", "eval_batch_size"):
        value = data.get(field)
        if not is_int(value) or value < 1:
            raise fail(f"data.{field}", value, "must be a positive integer")
    for field in ("val_fraction", "test_fraction"):
        value = data.get(field)
        if not is_number(value) or not 0 < value < 1:
            raise fail(f"data.{field}", value, "must be a fraction in (0, 1)")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction:g}: "
            "leaves no training data; the sum must be below 1"
        )
    if not isinstance(data.get("standardize"), bool):
        raise fail("data.standardize", data.get("standardize"), "must be true or false")
    if "name" in data and not (isinstance(data.get("name"), str) and data.get("name")):
        raise fail("data.name", data.get("name"), "must be a non-empty text: the dataset's name")
    if "seed" in data:  # the split's seed (default: the run's seed)
        check_seed("data.seed", data.get("seed"))
    source_of(data).check()


# --- augmentation ---------------------------------------------------------------------------


def check_augmentation(cfg: DictConfig) -> None:
    """Augmentation is a list of kornia transforms, and only for image data."""
    augmentation = cfg.get("augmentation")
    if augmentation is None:
        return
    unknown_keys("augmentation", augmentation, ("name", "transforms"), "augmentation")
    if "name" in augmentation:
        apply("augmentation.name", augmentation.get("name"), TEXT)
    transforms = augmentation.get("transforms")
    if not isinstance(transforms, (list, ListConfig)):
        raise fail("augmentation.transforms", transforms, "must be a list of kornia augmentations")
    for i, spec in enumerate(transforms):
        if not isinstance(spec, DictConfig) or not isinstance(spec.get("_target_"), str):
            raise fail(f"augmentation.transforms[{i}]", spec, "must be a mapping with a _target_ (a kornia class)")
    if transforms and source_of(cfg.data).image_shape is None:
        raise no_images(
            f"augmentation={augmentation.get('name')}", cfg.data.name, "augmentation works on", "augmentation=none"
        )
