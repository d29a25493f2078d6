"""The MLP backbone, the losses and the names the config checks know."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dllab.catalog import ACTIVATIONS, ALL_LOSSES, LOSSES
from dllab.models.mlp import ACTIVATION_LAYERS, MLP
from dllab.training.losses import SoftmaxMSELoss, build_loss


def test_catalog_names_match_the_builders() -> None:
    assert set(ACTIVATIONS) == set(ACTIVATION_LAYERS)
    assert set(ALL_LOSSES) == set(LOSSES["classification"]) | set(LOSSES["regression"])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_shapes_and_activation(activation: str) -> None:
    model = MLP(64, 10, hidden_sizes=[32, 16], activation=activation)
    out = model(torch.randn(5, 1, 8, 8))  # images are flattened
    assert out.shape == (5, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 10)]
    assert sum(isinstance(m, type(ACTIVATION_LAYERS[activation]())) for m in model.modules()) >= 2


def test_mlp_activation_is_applied() -> None:
    model = MLP(1, 1, hidden_sizes=[1], activation="relu")
    with torch.no_grad():
        model.layers[1].weight.fill_(1.0)
        model.layers[1].bias.fill_(0.0)
        model.layers[3].weight.fill_(1.0)
        model.layers[3].bias.fill_(0.0)
    assert model(torch.tensor([[-2.0], [3.0]])).flatten().tolist() == [0.0, 3.0]


def test_mlp_without_hidden_layers_is_linear_and_options_add_layers() -> None:
    assert [type(m) for m in MLP(3, 2, hidden_sizes=[]).layers] == [nn.Flatten, nn.Linear]
    layers = [type(m) for m in MLP(3, 2, hidden_sizes=[4], dropout=0.5, batch_norm=True).layers]
    assert layers == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]


def test_losses_per_task() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    assert isinstance(build_loss("classification"), nn.CrossEntropyLoss)
    assert isinstance(build_loss("regression"), nn.MSELoss)
    smooth = build_loss("classification", "cross_entropy", label_smoothing=0.2)
    assert smooth(logits, target) > build_loss("classification", "cross_entropy")(logits, target)
    hinge = build_loss("classification", "hinge", margin=1.0)
    assert torch.isclose(hinge(logits, target), torch.tensor(0.0))  # both margins >= 1
    probs = logits.softmax(-1)
    expected = ((probs - torch.eye(2)) ** 2).mean()
    assert torch.isclose(SoftmaxMSELoss()(logits, target), expected)
    y, t = torch.tensor([[0.0], [3.0]]), torch.tensor([[1.0], [1.0]])
    assert build_loss("regression", "l1")(y, t).item() == 1.5
    assert build_loss("regression", "huber", delta=1.0)(y, t).item() == pytest.approx((0.5 + 1.5) / 2)


@pytest.mark.parametrize(("task", "loss"), [("regression", "cross_entropy"), ("regression", "hinge")])
def test_loss_that_does_not_fit_the_task_is_refused(task: str, loss: str) -> None:
    with pytest.raises(ValueError, match=f"loss={loss} does not fit the {task} task; valid for {task}: mse"):
        build_loss(task, loss)
