"""The networks (MLP, CNN, any nn.Module by _target_), the loss registry and the names the
config checks know."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from torch import nn

from dllab.catalog import ACTIVATIONS, ALL_LOSSES, LOSSES
from dllab.errors import ConfigError
from dllab.models.activations import ACTIVATION_LAYERS
from dllab.models.cnn import CNN
from dllab.models.mlp import MLP
from dllab.models.network import build_network
from dllab.runs.config import config_dir
from dllab.training.losses import LOSS_CLASSES, MSELoss, build_loss
from tests.conftest import run_cli, run_dirs


def test_catalog_names_match_the_builders() -> None:
    assert set(ACTIVATIONS) == set(ACTIVATION_LAYERS)
    assert set(ALL_LOSSES) == set(LOSS_CLASSES)
    assert set(LOSS_CLASSES) == set(LOSSES["classification"]) | set(LOSSES["regression"])


def test_each_default_network_yaml_sets_the_keys_its_class_takes() -> None:
    """The keys of model=mlp and model=cnn bind to MLP's and CNN's signatures (the data's sizes
    come from the data), through the one function that binds every group's keys."""
    from dllab.models.network import DATA_SIZES
    from dllab.targets import check_keys, class_keys

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for name, cls in (("mlp", MLP), ("cnn", CNN)):
            model = compose("train", overrides=[f"model={name}"]).model
            check_keys("model", model, cls, passed=DATA_SIZES)
            assert sorted(k for k in model if k != "_target_") == sorted(set(class_keys(cls)[0]) - set(DATA_SIZES))


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


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 5, 3)])
def test_cnn_takes_images_and_their_flattened_rows(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    cnn = CNN(shape, 7, channels=[4, 6], kernel_size=3, hidden_sizes=[16]).eval()
    images = torch.randn(3, *shape)
    out = cnn(images)
    assert out.shape == (3, 7)
    assert torch.equal(cnn(images.flatten(1)), out)  # the pictures feed rows
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(shape[0], 4), (4, 6)]


def test_cnn_pools_while_the_image_is_large_enough_and_options_add_layers() -> None:
    # 8x8 -> 4x4 -> 2x2 -> 1x1 -> (no pooling at 1x1)
    cnn = CNN((1, 8, 8), 10, channels=[2, 2, 2, 2], hidden_sizes=[])
    assert sum(isinstance(m, nn.MaxPool2d) for m in cnn.modules()) == 3
    assert cnn.head.layers[1].in_features == 2 * 1 * 1
    avg = CNN((1, 8, 8), 10, channels=[3], pooling="avg", batch_norm=True, dropout=0.2, activation="tanh")
    kinds = [type(m) for m in avg.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.Tanh, nn.AvgPool2d]
    assert any(isinstance(m, nn.Dropout) for m in avg.head.modules())
    flat = CNN((1, 8, 8), 10, channels=[3], pooling="none", hidden_sizes=[])
    assert flat.head.layers[1].in_features == 3 * 8 * 8
    with pytest.raises(ValueError, match="pooling='median': unknown; choose one of max, avg, none"):
        CNN((1, 8, 8), 10, pooling="median")


class Sizes(nn.Module):
    """A network that takes only some of the sizes dllab knows, and an option of its own."""

    def __init__(self, output_size: int, width: int = 3) -> None:
        super().__init__()
        self.output_size, self.width = output_size, width
        self.layer = nn.LazyLinear(output_size)


class Everything(nn.Module):
    def __init__(self, **sizes: object) -> None:
        super().__init__()
        self.sizes = sizes


def test_networks_get_the_sizes_their_init_names_and_their_options() -> None:
    net = build_network({"_target_": f"{__name__}.Sizes", "width": 9}, input_size=4, output_size=2)
    assert isinstance(net, Sizes) and (net.output_size, net.width) == (2, 9)
    every = build_network({"_target_": f"{__name__}.Everything"}, 4, 2, image_shape=(1, 2, 2))
    assert isinstance(every, Everything)
    assert every.sizes == {"input_size": 4, "output_size": 2, "image_shape": (1, 2, 2)}
    cnn = build_network({"_target_": "dllab.models.cnn.CNN", "channels": [2]}, 64, 10, image_shape=[1, 8, 8])
    assert isinstance(cnn, CNN) and cnn.image_shape == (1, 8, 8)


class WideNet(nn.Module):
    """A user's network that takes the sizes it uses and lets ``**_`` swallow the rest."""

    def __init__(self, input_size: int, output_size: int, width: int = 16, **_: object) -> None:
        super().__init__()
        self.rest = _
        layers = [nn.Flatten(), nn.Linear(input_size, width), nn.Tanh(), nn.Linear(width, output_size)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ImageAware(nn.Module):
    """A user's network that names ``image_shape``, with a default: it works on any data."""

    def __init__(self, input_size: int, output_size: int, image_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.layer = nn.Linear(input_size, output_size)


def test_a_kwargs_network_gets_image_shape_only_from_image_data() -> None:
    plain = build_network({"_target_": f"{__name__}.WideNet", "width": 24}, 2, 2)
    assert isinstance(plain, WideNet) and plain.rest == {}  # no image_shape=None to swallow
    assert plain(torch.zeros(5, 2)).shape == (5, 2)
    assert plain.layers[1].weight.shape == (24, 2)
    images = build_network({"_target_": f"{__name__}.WideNet"}, 64, 10, image_shape=(1, 8, 8))
    assert isinstance(images, WideNet) and images.rest == {"image_shape": (1, 8, 8)}
    assert images(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    every = build_network({"_target_": f"{__name__}.Everything"}, 4, 2)
    assert isinstance(every, Everything) and every.sizes == {"input_size": 4, "output_size": 2}


def test_a_network_naming_image_shape_gets_none_or_is_refused_on_data_without_images() -> None:
    aware = build_network({"_target_": f"{__name__}.ImageAware"}, 4, 2)
    assert isinstance(aware, ImageAware) and aware.image_shape is None
    aware = build_network({"_target_": f"{__name__}.ImageAware"}, 12, 2, image_shape=(3, 2, 2))
    assert isinstance(aware, ImageAware) and aware.image_shape == (3, 2, 2)
    only = build_network({"_target_": f"{__name__}.ImagesOnly"}, 12, 2, image_shape=(3, 2, 2))  # names it, no default
    assert isinstance(only, ImagesOnly) and only.conv.in_channels == 3
    message = f"model._target_={__name__}.ImagesOnly: needs images, and this data holds none; use model=mlp"
    with pytest.raises(ConfigError, match=f"^{message}$"):
        build_network({"_target_": f"{__name__}.ImagesOnly"}, 4, 2)


WIDENET = """\
from torch import nn


class WideNet(nn.Module):
    def __init__(self, input_size, output_size, width=16, **_):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_size, width), nn.ReLU(), nn.Linear(width, output_size))

    def forward(self, x):
        return self.layers(x)
"""


def test_a_kwargs_network_trains_on_data_without_images(tmp_path: Path) -> None:
    """The command of issue 25, which ended ``needs images, and this data holds none``."""
    (tmp_path / "widenet.py").write_text(WIDENET)
    result = run_cli(
        "dllab-train",
        *("model._target_=widenet.WideNet", "~model.hidden_sizes", "~model.activation", "~model.dropout"),
        *("~model.batch_norm", "+model.width=24", "data=circle", "trainer.max_epochs=1", "plots=none"),
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["net.layers.0.weight"].shape == (24, 2)


@pytest.mark.parametrize(
    ("config", "image_shape", "message"),
    [
        ({"_target_": "no.such.Net"}, None, "model._target_=no.such.Net: cannot import no.such.Net"),
        ({"_target_": "torch.optim.SGD"}, None, "model._target_=torch.optim.SGD: not a subclass of torch.nn"),
        ({"_target_": f"{__name__}.Sizes", "depth": 3}, None, "model.depth: Sizes does not take it; it takes width"),
        ({"_target_": f"{__name__}.Sizes", "output_size": 3}, None, "model.output_size: comes from the data"),
        ({"_target_": "dllab.models.cnn.CNN"}, None, "needs images, and this data holds none; use model=mlp"),
        ({"_target_": "dllab.models.mlp.MLP", "activation": "swish"}, None, "model=MLP: activation='swish': unknown"),
    ],
)
def test_bad_network_configs_are_one_line_errors(config: dict, image_shape: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_network(config, 4, 2, image_shape)  # type: ignore[arg-type]


def _reference_losses(task: str) -> dict[str, object]:
    """Each named loss as a plain formula, to compare the registry's classes with."""
    if task == "classification":
        return {
            "cross_entropy": F.cross_entropy,
            "hinge": F.multi_margin_loss,
            "mse": lambda out, y: F.mse_loss(out.softmax(-1), F.one_hot(y, out.shape[-1]).float()),
        }
    return {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_catalog_loss_builds_the_loss_it_names(task: str) -> None:
    """Each name of the catalog, from the registry and from its conf/loss file, computes its formula."""
    torch.manual_seed(0)
    output = torch.randn(6, 3)
    target = torch.randint(0, 3, (6,)) if task == "classification" else torch.randn(6, 3)
    references = _reference_losses(task)
    assert set(references) == set(LOSSES[task])
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for name, formula in references.items():
            expected = formula(output, target)  # type: ignore[operator]
            assert torch.isclose(build_loss(task, {"name": name})(output, target), expected), name
            loss_cfg = dict(compose("train", overrides=[f"loss={name}"]).loss)
            assert get_class(loss_cfg["_target_"]) is get_class(LOSS_CLASSES[name]), name
            assert torch.isclose(build_loss(task, loss_cfg)(output, target), expected), name
    default = build_loss(task, {"name": "auto"})
    assert isinstance(default, nn.CrossEntropyLoss if task == "classification" else MSELoss)


def test_loss_options_reach_the_loss() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    smooth = build_loss("classification", {"name": "cross_entropy", "label_smoothing": 0.2})
    assert smooth(logits, target) > build_loss("classification", {"name": "cross_entropy"})(logits, target)
    hinge = build_loss("classification", {"name": "hinge", "margin": 1.0})
    assert torch.isclose(hinge(logits, target), torch.tensor(0.0))  # both margins >= 1
    y, t = torch.tensor([[0.0], [3.0]]), torch.tensor([[1.0], [1.0]])
    assert build_loss("regression", {"name": "l1"})(y, t).item() == 1.5
    assert build_loss("regression", {"name": "huber", "delta": 1.0})(y, t).item() == pytest.approx((0.5 + 1.5) / 2)


def test_a_loss_of_ones_own_by_target() -> None:
    loss = build_loss("regression", {"_target_": "torch.nn.SmoothL1Loss", "name": "smooth_l1", "beta": 0.5})
    assert isinstance(loss, nn.SmoothL1Loss) and loss.beta == 0.5


@pytest.mark.parametrize(
    ("task", "config", "message"),
    [
        ("regression", {"name": "cross_entropy"}, "loss=cross_entropy does not fit the regression task; valid for"),
        ("regression", {"name": "hinge"}, "loss=hinge does not fit the regression task; valid for regression: mse"),
        ("classification", {"name": "focal"}, "loss.name=focal: unknown; choose one of auto, cross_entropy"),
        ("classification", {"name": "hinge", "_target_": "torch.nn.CrossEntropyLoss"}, "loss.name=hinge is torch"),
        ("classification", {"name": "cross_entropy", "gamma": 2}, "loss=cross_entropy: CrossEntropyLoss does not"),
        ("regression", {"name": "x", "_target_": "no.such.Loss"}, "loss._target_=no.such.Loss: cannot import"),
    ],
)
def test_bad_losses_are_one_line_errors(task: str, config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_loss(task, config)


class ImagesOnly(nn.Module):
    """A network that only takes (N, C, H, W) images."""

    def __init__(self, image_shape: list[int], output_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(image_shape[0], 4, 3, padding=1)
        self.head = nn.LazyLinear(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4, x.shape
        return self.head(self.conv(x).flatten(1))


def test_image_data_reaches_a_network_as_images_in_training_test_and_pictures() -> None:
    from dllab.data.datamodule import InMemoryDataModule
    from dllab.data.sklearn_sets import SklearnSet
    from dllab.pictures.callbacks import predict
    from dllab.training.module import ClassificationModule
    from tests.conftest import bare_trainer

    dm = InMemoryDataModule(SklearnSet("digits"), batch_size=64, seed=0)
    dm.setup()
    module = ClassificationModule(
        dm.input_size, dm.output_size, net={"_target_": f"{__name__}.ImagesOnly"}, image_shape=list(dm.image_shape)
    )
    trainer = bare_trainer(max_epochs=2)
    trainer.fit(module, dm)
    assert trainer.test(module, dm, verbose=False)[0]["test/acc"] > 0.5
    probs = predict(module, dm.arrays["test"][0], dm.image_shape)
    assert probs.shape == (len(dm.arrays["test"][0]), 10)


def test_the_cnn_learns_the_digits_as_images(tmp_path) -> None:
    """model=cnn end to end: images (1, 8, 8) reach the conv layers, and it learns."""
    import json

    result = run_cli("dllab-train", "model=cnn", "trainer.max_epochs=8", "plots=none", "threads=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test"]["test/acc"] >= 0.95
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["image_shape"] == [1, 8, 8]
    assert checkpoint["state_dict"]["net.features.0.weight"].shape == (32, 1, 3, 3)
