"""The callbacks group, torch-free: each entry a class by ``_target_``, and for the callbacks
dllab ships, the values of their keys; the checkpoint options dllab's epoch loop cannot honour.
Their key names are bound to the classes' signatures once torch is imported."""

from __future__ import annotations

from omegaconf import DictConfig

from dllab.field_checks import (
    BOOL,
    BOOL_OR_NULL,
    NON_NEGATIVE,
    TEXT,
    TEXT_OR_NULL,
    Rule,
    apply,
    entries,
    fail,
    integer,
    one_of,
    real,
)

# The callbacks conf/callbacks and conf/hparams_search name, whose values these rules describe.
CALLBACKS = (
    "dllab.training.checkpointing.BestCheckpoint",
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "dllab.training.checkpointing.LastCheckpoint",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.ModelSummary",
    "dllab.training.callbacks.EpochProgressBar",
    "dllab.training.callbacks.DataSummary",
    "dllab.data.augmentation.AugmentationPreview",
    "dllab.sweeps.pruning.OptunaPruning",
)
CALLBACK_RULES: dict[str, Rule] = {
    "dirpath": TEXT_OR_NULL,
    "filename": TEXT_OR_NULL,
    "tag": TEXT,
    "monitor": TEXT_OR_NULL,
    "tie_breaker": TEXT_OR_NULL,
    "mode": one_of("min", "max"),
    "save_last": (lambda v: v is None or isinstance(v, bool) or v == "link", "must be true, false, link or null"),
    "save_top_k": integer(-1, what="-1: every epoch, 0: none"),
    "every_n_epochs": integer(0, null=True),
    "write_every_seconds": NON_NEGATIVE,
    "every_seconds": NON_NEGATIVE,
    "refresh_seconds": NON_NEGATIVE,
    "patience": integer(0, what="validations without improvement before stopping"),
    "min_delta": NON_NEGATIVE,
    "stopping_threshold": real(lambda v: True, "must be null or a number", null=True),
    "divergence_threshold": real(lambda v: True, "must be null or a number", null=True),
    "logging_interval": one_of("epoch", "step", null=True),
    "max_depth": integer(-1, what="-1: every layer"),
    "n_images": integer(1),
    "storage": TEXT_OR_NULL,
    "study_name": TEXT_OR_NULL,
    "trial_id": integer(0, null=True),
    **dict.fromkeys(
        ("verbose", "save_on_exception", "save_weights_only", "auto_insert_metric_name", "enable_version_counter"),
        BOOL,
    ),
    **dict.fromkeys(("strict", "check_finite", "log_rank_zero_only", "log_momentum", "log_weight_decay"), BOOL),
    **dict.fromkeys(("save_on_train_epoch_end", "check_on_train_epoch_end"), BOOL_OR_NULL),
}


def check_callbacks(cfg: DictConfig) -> None:
    """Each entry of the callbacks group: a class with a ``_target_`` (or null), ``enabled``
    true or false, and for the callbacks dllab ships, valid values."""
    for field, node, target in entries(cfg, "callbacks", "a callback"):
        if target not in CALLBACKS:
            continue  # a callback of one's own: its class checks its arguments
        for key in node:
            if key in CALLBACK_RULES:
                apply(f"{field}.{key!s}", node.get(key), CALLBACK_RULES[str(key)])


def check_checkpoints(cfg: DictConfig) -> None:
    """dllab.training.checkpointing.BestCheckpoint writes on a time budget; last.ckpt is LastCheckpoint's."""
    best = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    for field in ("every_n_train_steps", "train_time_interval"):
        if best.get(field):
            raise fail(
                f"callbacks.model_checkpoint.{field}",
                best.get(field),
                "not supported: dllab checks for a new best once per epoch (a checkpoint inside an epoch "
                "cannot be resumed exactly); use every_n_epochs",
            )
    if best.get("save_last") and best.get("write_every_seconds", 0) > 0:
        raise fail(
            "callbacks.model_checkpoint.save_last",
            best.get("save_last"),
            "not with write_every_seconds > 0 (last.ckpt is callbacks.last_checkpoint's); use false",
        )
