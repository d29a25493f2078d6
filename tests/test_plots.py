"""Pictures: every plot function draws a real image of the expected size; the decision
boundary classifies the input plane as the model does; the two-parameter landscape has its
minimum at θ*; runs log their pictures to TensorBoard and save them in the run dir."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dllab import landscape
from dllab.checks import check_config
from dllab.data.datamodule import InMemoryDataModule
from dllab.data.functions import FUNCTION_DOMAIN, TARGET_FUNCTIONS, FunctionSet
from dllab.data.playground import Playground, expand_features
from dllab.errors import ConfigError
from dllab.pictures import plots
from dllab.pictures.callbacks import DecisionBoundary, FunctionFit, LearningCurves, RegressionFit, model_inputs, predict
from dllab.training.module import ClassificationModule, RegressionModule
from dllab.training.tuner import lr_range_test
from tests.conftest import mlp, run_cli, run_dirs

RNG = np.random.default_rng(0)


def assert_real_image(figure: Figure, tmp_path: Path, width: float, height: float) -> None:
    """Rendered at width × height inches and the figure's dpi, not one flat colour, and the
    PNG file has the same size."""
    expected = (round(height * figure.dpi), round(width * figure.dpi), 3)
    rgb = plots.to_rgb(figure)
    assert rgb.shape == expected and rgb.dtype == np.uint8
    assert rgb.std() > 10 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50
    written = imread(plots.save(figure, tmp_path / "picture.png"))
    assert written.shape[:2] == expected[:2]


def binary_probs(points: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(np.hypot(points[:, 0], points[:, 1]) - 2.5))
    return np.stack([1 - p, p], 1)


def _grid() -> plots.Grid:
    return plots.grid_over(RNG.uniform(-5, 5, (300, 2)), resolution=40)


_AXIS = np.linspace(-1, 1, 11)
BOWL = (_AXIS, _AXIS, 1 + np.add.outer(_AXIS**2, _AXIS**2))  # a loss landscape on an 11 x 11 grid

FIGURES: dict[str, tuple[Callable[[], Figure], float, float]] = {
    "decision_boundary": (
        lambda: plots.decision_boundary_figure(
            _grid(),
            binary_probs(_grid().points),
            RNG.uniform(-5, 5, (50, 2)),
            RNG.integers(0, 2, 50),
            RNG.uniform(-5, 5, (20, 2)),
            np.r_[np.zeros(10, int), np.ones(10, int)],
            np.r_[np.zeros(12, int), np.ones(8, int)],
        ),
        4.0,
        4.0,
    ),
    "decision_boundary_3_classes": (
        lambda: plots.decision_boundary_figure(
            _grid(),
            RNG.dirichlet([1, 1, 1], 1600),
            RNG.uniform(-5, 5, (30, 2)),
            RNG.integers(0, 3, 30),
            np.zeros((0, 2)),
            np.zeros(0, int),
            np.zeros(0, int),
            ["a", "b", "c"],
        ),
        4.0,
        4.0,
    ),
    "regression_fit": (
        lambda: plots.regression_fit_figure(np.arange(50.0), np.arange(50.0) + RNG.normal(0, 2, 50)),
        8.0,
        3.6,
    ),
    "regression_fit_with_surface": (
        lambda: plots.regression_fit_figure(
            np.arange(50.0),
            np.arange(50.0) + RNG.normal(0, 2, 50),
            surface={
                "grid": _grid(),
                "predicted": _grid().points.sum(1),
                "true": _grid().points.sum(1) * 1.1,
                "points": RNG.uniform(-5, 5, (40, 2)),
                "targets": RNG.normal(size=40),
            },
        ),
        8.0,
        7.2,
    ),
    "regression_surface": (
        lambda: plots.regression_surface_figure(
            _grid(), _grid().points[:, 0], None, RNG.uniform(-5, 5, (40, 2)), RNG.normal(size=40)
        ),
        8.0,
        3.6,
    ),
    "function_fit": (
        lambda: plots.function_fit_figure(
            np.linspace(-3, 3, 100),
            np.tanh(np.linspace(-3, 3, 100)),
            np.sin(np.linspace(-3, 3, 100)),
            (np.linspace(-3, 3, 30), np.sin(np.linspace(-3, 3, 30))),
            (np.linspace(-2.9, 2.9, 8), np.sin(np.linspace(-2.9, 2.9, 8))),
        ),
        6.0,
        3.6,
    ),
    "confusion_matrix": (lambda: plots.confusion_matrix_figure(np.array([[8, 2], [1, 9]]), ["-1", "+1"]), 4.0, 3.2),
    "curves": (
        lambda: plots.curves_figure(
            {
                "epoch": [1, 2, 3],
                "train/loss": [1.0, 0.5, 0.3],
                "val/loss": [1.1, 0.6, math.nan],
                "train/acc": [0.5, 0.7, 0.9],
                "val/acc": [0.4, 0.7, math.nan],
            },
            "acc",
        ),
        8.0,
        3.2,
    ),
    "lr_find": (lambda: plots.lr_find_figure(np.geomspace(1e-5, 1, 50), np.linspace(1, 0.2, 50), 1e-2), 5.0, 3.4),
    "two_param": (lambda: landscape.two_param_figure(landscape.two_param_cases(resolution=31, steps=10)), 10.0, 4.6),
    "landscape_contour": (
        lambda: plots.landscape_contour_figure(*BOWL),
        5.0,
        4.4,
    ),
    "landscape_surface": (
        lambda: plots.landscape_surface_figure(*BOWL),
        5.0,
        4.4,
    ),
    "activations": (
        lambda: plots.activations_figure(np.linspace(-4, 4, 50), landscape.activation_curves(np.linspace(-4, 4, 50))),
        12.0,
        4.8,
    ),
}


@pytest.mark.parametrize("name", FIGURES)
def test_each_plot_function_draws_a_real_image(name: str, tmp_path: Path) -> None:
    make, width, height = FIGURES[name]
    assert_real_image(make(), tmp_path, width, height)


def test_raster_pictures() -> None:
    grid = _grid()
    rasters = {
        (256, 256): plots.boundary_raster(
            grid,
            binary_probs(grid.points),
            RNG.uniform(-5, 5, (50, 2)),
            RNG.integers(0, 2, 50),
            RNG.uniform(-5, 5, (20, 2)),
            RNG.integers(0, 2, 20),
            RNG.integers(0, 2, 20),
        ),
        (192, 392): plots.surface_raster(grid, grid.points.sum(1), grid.points.sum(1) * 0.5),
        (200, 400): plots.curve_raster(
            np.linspace(-3, 3, 50), [(np.sin(np.linspace(-3, 3, 50)), "black")], [(np.zeros(3), np.ones(3), "blue")]
        ),
    }
    for shape, rgb in rasters.items():
        assert rgb.shape == (*shape, 3) and rgb.dtype == np.uint8 and rgb.std() > 10
        assert imread(io.BytesIO(plots.png_of(rgb))).shape[:2] == shape


def test_confusion_matrix_grows_with_the_classes(tmp_path: Path) -> None:
    names = [f"class_{i}" for i in range(10)]
    figure = plots.confusion_matrix_figure(RNG.integers(0, 20, (10, 10)), names)
    assert figure.get_size_inches()[0] > 5 and figure.axes[0].get_xticklabels()[3].get_text() == "class_3"
    assert_real_image(figure, tmp_path, *figure.get_size_inches())


# --- the decision boundary classifies the plane as the model does -----------------------------


def trained_circle_model() -> tuple[InMemoryDataModule, ClassificationModule]:
    """A circle model whose inputs are expanded features, standardized: the picture has to
    take raw grid points through both, as the model's data did."""
    source = Playground("circle", n_samples=300, features=["x1", "x2", "x1^2", "x2^2"])
    dm = InMemoryDataModule(source, standardize=True, seed=1)
    dm.setup()
    torch.manual_seed(0)
    module = ClassificationModule(dm.input_size, dm.output_size, net=mlp([8], activation="tanh"))
    x, y = (torch.from_numpy(a) for a in dm.arrays["train"])
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
    return dm, module


def model_classes(
    dm: InMemoryDataModule, module: ClassificationModule, raw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Independently of the plot code: expand, scale, run the model; class and P(+1)."""
    x = (expand_features(raw, dm.source.features) - dm.scaling["x_mean"]) / dm.scaling["x_std"]
    with torch.no_grad():
        probs = module(torch.from_numpy(x.astype(np.float32))).softmax(-1).numpy()
    return probs.argmax(1), probs[:, 1]


def test_decision_boundary_classifies_the_grid_as_the_model_does(tmp_path: Path) -> None:
    dm, module = trained_circle_model()
    test_classes, _ = model_classes(dm, module, dm.points["test"])
    assert (test_classes == dm.arrays["test"][1]).mean() >= 0.95  # a real boundary, both classes

    # the callback's picture of the tested model
    callback = DecisionBoundary(tmp_path, resolution=60)
    figure = callback.draw(None, module, dm, final=True)  # type: ignore[arg-type]
    assert_real_image(figure, tmp_path, 4.0, 4.0)

    # its grid probabilities are the model's, point for point
    grid = plots.grid_over(np.concatenate(list(dm.points.values())), 60)
    probs = predict(module, model_inputs(dm, grid.points))
    classes, p_plus = model_classes(dm, module, grid.points)
    assert np.array_equal(probs.argmax(1), classes) and np.allclose(probs[:, 1], p_plus, atol=1e-5)
    assert 0.2 < classes.mean() < 0.8

    # and the rendered background shows them: sample points of the plane, read the pixel's
    # colour (blue is +1, orange is -1) where the model is not unsure
    none, no_labels = np.zeros((0, 2)), np.zeros(0, int)
    background = plots.decision_boundary_figure(grid, probs, none, no_labels, none, no_labels, no_labels)
    rgb = plots.to_rgb(background)
    ax = background.axes[0]
    rng = np.random.default_rng(3)
    low, high = grid.points.min(0), grid.points.max(0)
    samples = rng.uniform(low + 0.05 * (high - low), high - 0.05 * (high - low), (300, 2))
    sample_classes, _ = model_classes(dm, module, samples)
    # sure: P(+1) is 0.2 away from 0.5 on the same side over the sample's grid cell
    dx, dy = grid.spacing
    corners = [model_classes(dm, module, samples + np.array([sx * dx, sy * dy]))[1] for sx in (-1, 1) for sy in (-1, 1)]
    sure = np.all([np.abs(c - 0.5) > 0.2 for c in corners], 0) & np.all(
        [(c > 0.5) == sample_classes for c in corners], 0
    )
    assert sure.sum() > 200
    pixels = ax.transData.transform(samples)
    column, row = pixels[:, 0].astype(int), rgb.shape[0] - 1 - pixels[:, 1].astype(int)
    colour = rgb[row, column].astype(int)
    shown = np.where(colour[:, 2] > colour[:, 0], 1, 0)  # blue over red: +1
    assert np.array_equal(shown[sure], sample_classes[sure])

    # so does the raster logged during training
    raster = plots.boundary_raster(grid, probs, none, no_labels, none, no_labels, no_labels, size=200)
    at = plots.to_pixels(samples, grid.extent, raster.shape[:2])
    colour = raster[at[:, 0], at[:, 1]].astype(int)
    assert np.array_equal(np.where(colour[:, 2] > colour[:, 0], 1, 0)[sure], sample_classes[sure])


# --- landscapes ---------------------------------------------------------------------------------


def test_two_parameter_landscape_has_its_minimum_at_theta_star() -> None:
    cases = landscape.two_param_cases(resolution=81)
    for case in cases:
        spacing = (case.theta1[1] - case.theta1[0], case.theta2[1] - case.theta2[0])
        minimum = case.grid_minimum
        assert abs(minimum[0] - landscape.THETA_STAR[0]) <= spacing[0]
        assert abs(minimum[1] - landscape.THETA_STAR[1]) <= spacing[1]
        for path in case.paths.values():
            assert np.allclose(path[0], landscape.START) and path.shape == (101, 2)
    centred, shifted = cases
    assert shifted.condition_number > 50 * centred.condition_number  # different bowls
    for name in ("SGD", "SGD+momentum", "Adam"):  # all converge in the round bowl
        assert np.allclose(centred.paths[name][-1], landscape.THETA_STAR, atol=0.15)
    # the loss grid is the mean squared error of the model
    x, y = centred.x, centred.y
    assert centred.loss[10, 20] == pytest.approx(np.mean((centred.theta1[20] * x + centred.theta2[10] - y) ** 2))


def test_filter_normalised_slice_around_trained_weights() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    params = {k: p.detach() for k, p in net.named_parameters()}
    direction = landscape.filter_normalized_direction(params, torch.Generator().manual_seed(0))
    assert torch.allclose(direction["0.weight"].norm(dim=1), params["0.weight"].norm(dim=1), rtol=1e-4)
    assert not direction["0.bias"].any()
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    criterion = torch.nn.CrossEntropyLoss()
    _, _, loss = landscape.loss_slice(net, criterion, x, y, resolution=5)
    assert loss.shape == (5, 5) and np.isfinite(loss).all() and loss.std() > 0
    with torch.no_grad():
        assert loss[2, 2] == pytest.approx(float(criterion(net(x), y)), rel=1e-5)  # the centre is the model


def test_landscape_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landscape.main(["activations", f"out={tmp_path}"])
    assert imread(tmp_path / "activations.png").shape[:2] == (384, 960)
    with pytest.raises(SystemExit) as exit_info:
        landscape.main(["bogus"])
    assert exit_info.value.code == 2 and "bogus: unknown command" in capsys.readouterr().err


# --- data and learning rate -----------------------------------------------------------------------


@pytest.mark.parametrize("fn", sorted(TARGET_FUNCTIONS))
def test_function_data(fn: str) -> None:
    data = FunctionSet(fn=fn, n_samples=50).load(seed=0)
    points = data.points
    assert points is not None and np.allclose(points[:, 0], np.linspace(*FUNCTION_DOMAIN, 50))
    assert np.allclose(data.y[:, 0], TARGET_FUNCTIONS[fn](points[:, 0]), atol=1e-6)
    noisy = FunctionSet(fn=fn, n_samples=50, noise=0.2).load(seed=0)
    assert 0.1 < (noisy.y - data.y).std() / data.y.std() < 0.3


def test_config_checks_of_the_new_fields(make_cfg) -> None:
    check_config(make_cfg("data=function", "data.fn=abs", "tuner.lr_find=true"))
    for overrides, message in [
        (("data=function", "data.fn=cos"), "data.fn='cos': unknown function; choose one of sin, abs, step, square"),
        (("plots.every_n_epochs=0",), "plots.every_n_epochs=0: must be an integer >= 1"),
        (("+plots.histogram=true",), "plots.histogram=True: unknown key"),
        (("tuner.lr_find=true", "tuner.max_lr=1e-7"), "tuner.max_lr=1e-07: must be a number > tuner.min_lr"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
            check_config(make_cfg(*overrides))


def test_lr_range_test_leaves_the_model_alone_and_suggests_a_rate() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=200), batch_size=10, seed=0)
    dm.setup()
    torch.manual_seed(0)
    module = ClassificationModule(
        2, 2, net=mlp([8], activation="tanh"), optimizer={"_target_": "torch.optim.SGD", "lr": 0.01}
    )
    before = [p.detach().clone() for p in module.parameters()]
    result = lr_range_test(module, dm, num_training=120)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    assert np.all(np.diff(result.lrs) > 0) and result.lrs[0] == pytest.approx(1e-5)
    assert result.suggestion is not None and 1e-4 < result.suggestion < 10


def test_regression_pictures_scale_back_to_the_data(tmp_path: Path) -> None:
    dm = InMemoryDataModule(Playground("plane", n_samples=200), standardize=True, seed=0)
    dm.setup()
    module = RegressionModule(2, 1, net=mlp([4]))
    callback = RegressionFit(tmp_path, resolution=20)
    callback.surface = True
    parts = callback.surface_parts(module, dm)
    assert parts["true"].max() == pytest.approx(parts["grid"].points.sum(1).max() / 10)
    assert np.allclose(parts["targets"][:, 0], parts["points"].sum(1) / 10, atol=1e-5)  # noise 0: (x1 + x2) / 10
    assert_real_image(callback.draw(None, module, dm, final=True), tmp_path, 8.0, 7.2)  # type: ignore[arg-type]

    fn = InMemoryDataModule(FunctionSet(fn="square", n_samples=60), standardize=True, seed=0)
    fn.setup()
    figure = FunctionFit(tmp_path).draw(None, RegressionModule(1, 1, net=mlp([4])), fn, final=True)  # type: ignore[arg-type]
    assert_real_image(figure, tmp_path, 6.0, 3.6)


def test_learning_curves_keep_their_history_in_checkpoints() -> None:
    curves = LearningCurves(".")
    curves.history = {"epoch": [1, 2], "train/loss": [1.0, 0.5]}
    again = LearningCurves(".")
    again.load_state_dict(curves.state_dict())
    assert again.history == curves.history


# --- end to end: TensorBoard tags and run-dir files ------------------------------------------------


def images(run_dir: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {tag: [e.step for e in events.Images(tag)] for tag in events.Tags()["images"]}


@pytest.mark.slow
def test_a_classification_run_logs_and_saves_its_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(
        "dllab-train",
        "data=circle",
        "model.hidden_sizes=[8]",
        "trainer.max_epochs=4",
        "plots.every_n_epochs=2",
        "tuner.lr_find=true",
        "tuner.num_training=60",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    sizes = {"decision_boundary": (320, 320), "curves": (256, 640), "lr_find": (272, 400)}
    for name in ("decision_boundary", "confusion_matrix", "curves", "lr_find"):
        picture = imread(run_dir / f"{name}.png")
        assert picture.std() > 0.05 and picture.shape[:2] == sizes.get(name, picture.shape[:2])
    tags = images(run_dir)
    assert tags["plots/decision_boundary"] == [2, 4]
    assert tags["final/decision_boundary"] == tags["final/confusion_matrix"] == tags["final/curves"] == [4]
    assert tags["tuner/lr_find"] == [0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["plot_seconds"] > 0
    lr = metrics["lr_find"]["used_lr"]
    assert lr == metrics["lr_find"]["suggestion"] and f"lr: {lr}" in (run_dir / "config.yaml").read_text()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["optimizer"][
        "lr"
    ] == pytest.approx(lr)

    # the loss landscape around its weights
    landscape.main([f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "resolution=7"])
    tested = json.loads((run_dir / "metrics.json").read_text())["best_epoch"]
    assert f"(trained for {tested} epochs)" in capsys.readouterr().out  # which model the slice is around
    for name in ("landscape_contour", "landscape_surface"):
        assert imread(run_dir / f"{name}.png").shape[:2] == (352, 400)


@pytest.mark.slow
def test_a_function_run_draws_the_learned_curve(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train",
        "data=function",
        "data.fn=abs",
        "model.hidden_sizes=[16]",
        "trainer.max_epochs=3",
        "plots.every_n_epochs=1",
        "plots.curves=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert imread(run_dir / "function_fit.png").shape[:2] == (288, 480)
    assert imread(run_dir / "regression_fit.png").shape[:2] == (288, 640)
    assert not (run_dir / "curves.png").exists()
    tags = images(run_dir)
    assert tags["plots/function_fit"] == [1, 2, 3]
    assert set(tags) == {"plots/function_fit", "final/function_fit", "final/regression_fit"}


def test_testing_the_best_checkpoint_keeps_the_whole_history() -> None:
    curves = LearningCurves(".")
    curves.history = {"epoch": [1, 2, 3], "train/loss": [1.0, 0.5, 0.4]}
    curves.load_state_dict({"history": {"epoch": [1], "train/loss": [1.0]}})  # what trainer.test(best) does
    assert curves.history["epoch"] == [1, 2, 3]


def test_plots_config_switches(make_cfg) -> None:
    from dllab.pictures.callbacks import build_plot_callbacks
    from dllab.runs.config import plain

    assert build_plot_callbacks(**plain(make_cfg("plots=none").plots)) == []
    callbacks = build_plot_callbacks(**plain(make_cfg("plots.curves=false", "plots.every_n_epochs=3").plots))
    assert {type(c).__name__ for c in callbacks} == {
        "DecisionBoundary",
        "RegressionFit",
        "FunctionFit",
        "ConfusionMatrix",
    }
    assert all(c.every_n_epochs == 3 for c in callbacks)
