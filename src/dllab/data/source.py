"""The contract of a data source, and building one from a data config without loading it.

A source is a small dataclass whose fields are its config keys (``data.<field>``); the
data config's ``_target_`` names its class, and the config's other keys belong to the
DataModule (:data:`DATAMODULE_KEYS`). The config checks build the source and call its
``check`` before torch is imported; the DataModule calls ``load``. Nothing here imports torch.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from dllab.catalog import BUILTIN_SOURCES
from dllab.errors import ConfigError
from dllab.field_checks import fail
from dllab.targets import import_class

if TYPE_CHECKING:  # numpy: not imported by --help and --cfg job
    from dllab.data.dataset import Dataset

# The keys of a data config that InMemoryDataModule takes (a test keeps them in step with its
# signature); every other key but _target_ is the source's.
DATAMODULE_KEYS = ("batch_size", "val_fraction", "test_fraction", "seed", "standardize", "eval_batch_size")
# The _target_ of data configs saved before sources existed (a run dir's config.yaml): the
# DataModule itself, with the dataset chosen by data.name.
OLD_TARGETS = ("dllab.datamodule.InMemoryDataModule",)


@dataclass
class Source(ABC):
    """Where a dataset comes from: its config fields, their checks, and its loader.

    ``name`` is the dataset's name (run dirs, titles; free text for a source of one's own).
    Subclasses are dataclasses whose fields are their config keys. The properties and
    ``check`` neither load data nor import torch (they run in the config checks).
    """

    name: str

    @property
    @abstractmethod
    def task(self) -> str:
        """``"classification"``, ``"regression"``, or ``"auto"`` when only the loaded data can tell."""

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) when the rows are flattened images of a shape known before loading, else
        None. Augmentation is refused for data without it."""
        return None

    @property
    def mirrored(self) -> bool:
        """Whether a horizontal flip keeps the class (flips are left out of augmentation if not)."""
        return False

    def check(self) -> None:  # noqa: B027 - a source without fields to check needs no override
        """Raise :class:`ConfigError` for the first bad field: one line naming ``data.<field>``,
        the value and what is allowed (see :func:`fail`). Runs before ``load``."""

    @abstractmethod
    def load(self, seed: int) -> Dataset:
        """The whole dataset; ``seed`` fixes whatever is random in it (generation, subsets)."""


# --- helpers for checks ------------------------------------------------------------------


def require_text(field: str, value: Any, what: str) -> None:
    """A required text setting; None means it was never set (``???`` in the yaml)."""
    if value is None:
        raise ConfigError(f"{field}: required; set {field}={what}")
    if not isinstance(value, str) or not value.strip():
        raise fail(field, value, f"must be {what}")


# --- from a data config to a source -------------------------------------------------------


def upgrade_data_config(data: Mapping[str, Any] | DictConfig) -> DictConfig:
    """A data config as sources read it.

    A config saved before sources (``_target_`` the DataModule, :data:`OLD_TARGETS`) gets
    the source class of its ``name`` from BUILTIN_SOURCES; every other config comes back
    as it is (a plain mapping as a DictConfig)."""
    if not isinstance(data, DictConfig):
        data = OmegaConf.create(dict(data))
    if data.get("_target_") not in OLD_TARGETS:
        return data
    name = data.get("name")
    if name not in BUILTIN_SOURCES:
        raise fail("data.name", name, f"unknown dataset; choose one of {', '.join(BUILTIN_SOURCES)}")
    upgraded = OmegaConf.to_container(data, resolve=True)
    assert isinstance(upgraded, dict)
    return OmegaConf.create({**upgraded, "_target_": BUILTIN_SOURCES[name]})


def source_class(target: Any) -> type[Source]:
    """The Source subclass a ``_target_`` names (module.Class), imported."""
    return import_class(target, "data._target_", Source, example="my_data.Moons")


def split_data_config(data: Mapping[str, Any] | DictConfig) -> tuple[Source, dict[str, Any]]:
    """The source a data config describes (built, not loaded, not checked) and the
    config's DataModule keys. Raises ConfigError for a bad ``_target_``, a key that neither
    takes, and a source field left unset that has no default."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    data = upgrade_data_config(data)
    target = data.get("_target_")
    parameters = inspect.signature(source_class(target)).parameters
    clash = [k for k in parameters if k in DATAMODULE_KEYS]
    if clash:
        raise ConfigError(f"data._target_={target}: field {clash[0]} is a DataModule key; rename it")
    keys = [str(k) for k in data if k != "_target_"]
    unknown = [k for k in keys if k not in parameters and k not in DATAMODULE_KEYS]
    if unknown:
        named = ", ".join(f"data.{k}" for k in unknown)
        raise ConfigError(
            f"{named}: unknown key{'s' * (len(unknown) > 1)} of data={data.get('name')}; valid: "
            f"{', '.join(parameters)} ({target}), {', '.join(DATAMODULE_KEYS)} (the DataModule)"
        )
    values = OmegaConf.to_container(data, resolve=True)  # a value not set (???) stays "???"
    assert isinstance(values, dict)
    fields = {k: None if OmegaConf.is_missing(data, k) else values[k] for k in keys if k in parameters}
    unset = [p.name for p in parameters.values() if p.default is p.empty and p.name not in fields]
    if unset:
        raise ConfigError(f"data.{unset[0]}: required by {target}; set data.{unset[0]}=...")
    try:
        source = instantiate({"_target_": target, **fields}, _convert_="all")
    except InstantiationException as err:
        raise ConfigError(f"data._target_={target}: {err.__cause__ or err}".replace("\n", " ")) from err
    return source, {k: values[k] for k in keys if k in DATAMODULE_KEYS}


def source_of(data: Mapping[str, Any] | DictConfig) -> Source:
    """The source of a data config, built without loading (see :func:`split_data_config`)."""
    return split_data_config(data)[0]


def image_sets() -> list[str]:
    """The built-in datasets whose rows are images (their source's ``image_shape`` is set)."""
    return [name for name, target in BUILTIN_SOURCES.items() if source_class(target)(name=name).image_shape]


def no_images(setting: str, data: str, needs: str, instead: str) -> ConfigError:
    """The one error for a setting that needs image data (augmentation, a CNN) on data without."""
    return ConfigError(
        f"{setting}: data={data} holds no images; {needs} image data ({', '.join(image_sets())}); use {instead}"
    )
