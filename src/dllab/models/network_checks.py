"""The options of dllab's own networks (MLP, CNN), checked torch-free before anything is
built: their values here; their key names are bound to the classes' signatures once torch is
imported (:func:`dllab.checks.check_targets`)."""

from __future__ import annotations

import itertools

from omegaconf import DictConfig, ListConfig

from dllab.catalog import ACTIVATIONS, POOLING
from dllab.data.source import no_images, source_of
from dllab.field_checks import (
    check_choice,
    check_int,
    check_number,
    fail,
    is_int,
)
from dllab.memory_checks import check_fits_memory

MLP_TARGET = "dllab.models.mlp.MLP"
CNN_TARGET = "dllab.models.cnn.CNN"
NETWORKS = (MLP_TARGET, CNN_TARGET)  # dllab's own networks, whose values are checked here


def check_model(cfg: DictConfig) -> None:
    """The values of dllab's own networks (MLP, CNN), torch-free; any other ``model._target_``
    checks its own values when it is built. The key names of every network are bound to its
    class's signature once torch is imported (:func:`dllab.checks.check_targets`)."""
    target = cfg.model.get("_target_", MLP_TARGET)
    if not isinstance(target, str) or "." not in target:
        raise fail("model._target_", target, "must be a class path, e.g. dllab.models.mlp.MLP or my_pkg.nets.MyNet")
    if target in NETWORKS:
        _check_network_options(cfg, target)
    if target == MLP_TARGET:
        _check_mlp_memory(cfg)
    if target == CNN_TARGET and source_of(cfg.data).image_shape is None:
        raise no_images("model=cnn", cfg.data.name, "a CNN needs", "model=mlp")


def _check_network_options(cfg: DictConfig, target: str) -> None:
    model = cfg.model
    hidden = model.get("hidden_sizes")
    if not isinstance(hidden, (list, ListConfig)) or not all(is_int(h) and h > 0 for h in hidden):
        raise fail("model.hidden_sizes", hidden, "must be a list of positive integers, e.g. [64,64]")
    check_choice(cfg, "model.activation", ACTIVATIONS)
    check_number(cfg, "model.dropout", lambda v: 0 <= v < 1, "must be a number in [0, 1)")
    if not isinstance(model.get("batch_norm"), bool):
        raise fail("model.batch_norm", model.get("batch_norm"), "must be true or false")
    if target == CNN_TARGET:
        channels = model.get("channels")
        if (
            not isinstance(channels, (list, ListConfig))
            or not channels
            or not all(is_int(c) and c > 0 for c in channels)
        ):
            raise fail("model.channels", channels, "must be a non-empty list of positive integers, e.g. [32,64]")
        check_int(cfg, "model.kernel_size", 1, "must be a positive integer")
        check_choice(cfg, "model.pooling", POOLING)
    if model.batch_norm and cfg.data.batch_size == 1:
        raise fail(
            "data.batch_size",
            1,
            "model.batch_norm=true needs training batches of 2 or more samples (BatchNorm cannot train on one); "
            "use a larger data.batch_size or model.batch_norm=false",
        )


# Numbers an optimizer keeps per parameter (Adam's two moments, SGD's momentum buffer, ...).
OPTIMIZER_STATES = {"Adam": 2, "AdamW": 2, "NAdam": 2, "RAdam": 2, "Adamax": 2, "Adagrad": 1, "RMSprop": 1}


def _check_mlp_memory(cfg: DictConfig) -> None:
    """An MLP whose weights, gradients and optimizer state cannot fit the machine's memory is
    refused before the data is loaded. A lower bound: the data's sizes are not known yet
    (one input and one output unless the source says its image shape)."""
    image = source_of(cfg.data).image_shape
    inputs = 1
    for size in image or ():
        inputs *= int(size)
    widths = [inputs, *(int(h) for h in cfg.model.hidden_sizes), 1]
    parameters = sum(a * b + b for a, b in itertools.pairwise(widths))
    precision = str(cfg.get("trainer", {}).get("precision", "32"))
    number = 8 if precision.startswith("64") else 2 if precision in ("16-true", "bf16-true") else 4
    optimizer = str((cfg.get("optimizer") or {}).get("_target_", "torch.optim.Adam")).rsplit(".", 1)[-1]
    momentum = (cfg.get("optimizer") or {}).get("momentum") or 0
    states = OPTIMIZER_STATES.get(optimizer, 1 if momentum else 0 if optimizer == "SGD" else 2)
    check_fits_memory(
        "model.hidden_sizes",
        list(cfg.model.hidden_sizes),
        parameters * number * (2 + states),
        f"{parameters:.3g} parameters x {number} bytes x {2 + states} (weights, gradients, "
        f"{states} {optimizer} state{'s' * (states != 1)} each)",
        "use smaller layers",
    )
