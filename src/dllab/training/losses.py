"""Loss functions by task and name, as ``nn.Module``s taking (model output, target)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dllab.catalog import AUTO, CLASSIFICATION, LOSSES, default_loss


class SoftmaxMSELoss(nn.Module):
    """Squared error between softmax probabilities and one-hot targets: the loss the
    TensorFlow Playground trains its classifiers with."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs = logits.softmax(dim=-1)
        one_hot = F.one_hot(target, probs.shape[-1]).to(probs.dtype)
        return F.mse_loss(probs, one_hot)


def build_loss(task: str, name: str = AUTO, **options: float) -> nn.Module:
    """The loss module for ``task``; ``name='auto'`` picks the task's standard loss."""
    name = default_loss(task) if name == AUTO else name
    if name not in LOSSES[task]:
        raise ValueError(f"loss={name} does not fit the {task} task; valid for {task}: {', '.join(LOSSES[task])}")
    if task == CLASSIFICATION:
        if name == "cross_entropy":
            return nn.CrossEntropyLoss(label_smoothing=float(options.get("label_smoothing", 0.0)))
        if name == "hinge":
            return nn.MultiMarginLoss(margin=float(options.get("margin", 1.0)))
        return SoftmaxMSELoss()
    if name == "mse":
        return nn.MSELoss()
    if name == "l1":
        return nn.L1Loss()
    return nn.HuberLoss(delta=float(options.get("delta", 1.0)))


def resolved_loss_name(task: str, name: str) -> str:
    return default_loss(task) if name == AUTO else name
