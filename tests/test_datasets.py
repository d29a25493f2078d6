"""The Playground generators and feature maps (their names on the command line), the function
set, and the scikit-learn sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dllab.data.functions import FunctionSet
from dllab.data.playground import FEATURES, GENERATORS, Playground, expand_features, multigauss_value
from dllab.data.sklearn_sets import SKLEARN_SETS, SklearnSet
from dllab.errors import ConfigError
from tests.conftest import run_cli, run_dirs


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("name", ["circle", "xor", "gauss", "spiral"])
def test_classification_sets_are_balanced_and_labelled_pm1(name: str) -> None:
    points, label = GENERATORS[name](500, 0.0, rng())
    assert points.shape == (500, 2)
    assert set(np.unique(label)) == {-1.0, 1.0}
    if name != "xor":  # xor's balance is random; the others generate half of each class
        assert (label > 0).sum() == 250


def test_circle_noise_free_rule_holds_exactly() -> None:
    points, label = GENERATORS["circle"](1000, 0.0, rng())
    radius = np.hypot(points[:, 0], points[:, 1])
    assert np.array_equal(label > 0, radius < 2.5)
    assert radius.max() <= 5.0
    assert not ((radius > 2.5) & (radius < 3.5)).any()  # the gap between the rings


def test_circle_noise_flips_some_labels() -> None:
    points, label = GENERATORS["circle"](1000, 0.5, rng())
    radius = np.hypot(points[:, 0], points[:, 1])
    assert 0 < (label > 0).__ne__(radius < 2.5).sum() < 500


def test_xor_noise_free_rule_and_padding() -> None:
    points, label = GENERATORS["xor"](1000, 0.0, rng())
    assert np.array_equal(label > 0, points[:, 0] * points[:, 1] >= 0)
    assert np.abs(points).min() >= 0.3 and np.abs(points).max() <= 5.3


def test_gauss_blob_centres_and_variance() -> None:
    points, label = GENERATORS["gauss"](4000, 0.0, rng())
    assert np.allclose(points[label > 0].mean(0), [2, 2], atol=0.1)
    assert np.allclose(points[label < 0].mean(0), [-2, -2], atol=0.1)
    assert np.allclose(points[label > 0].var(0), 0.5, atol=0.06)
    noisy, noisy_label = GENERATORS["gauss"](4000, 0.5, rng())
    assert np.allclose(noisy[noisy_label > 0].var(0), 4.0, rtol=0.1)


def test_spiral_noise_free_points_lie_on_the_arms() -> None:
    points, label = GENERATORS["spiral"](400, 0.0, rng())
    i = np.arange(200)
    r = i / 200 * 5
    t = 1.75 * i / 200 * 2 * np.pi
    assert np.allclose(points[label > 0], np.stack([r * np.sin(t), r * np.cos(t)], 1))
    assert np.allclose(points[label < 0], -points[label > 0], atol=1e-9)  # the second arm is turned by pi


def test_plane_target_is_scaled_sum() -> None:
    points, target = GENERATORS["plane"](1000, 0.0, rng())
    assert np.allclose(target, points.sum(1) / 10)
    assert np.abs(points).max() <= 6


def test_multigauss_values_at_bump_centres_and_between() -> None:
    centres = np.array([(-4, 2.5), (0, 2.5), (4, 2.5), (-4, -2.5), (0, -2.5), (4, -2.5)], float)
    assert np.allclose(multigauss_value(centres[:, 0], centres[:, 1]), [1, -1, 1, -1, 1, -1])
    assert multigauss_value(np.array([0.0]), np.array([0.0]))[0] == 0  # 2.5 away from every centre
    points, target = GENERATORS["multigauss"](1000, 0.0, rng())
    assert np.abs(target).max() <= 1 and np.allclose(target, multigauss_value(points[:, 0], points[:, 1]))


def test_feature_map_columns() -> None:
    points = np.array([[1.0, 2.0], [-0.5, 3.0]])
    x = expand_features(points, FEATURES)
    expected = [[1, 2, 1, 4, 2, np.sin(1), np.sin(2)], [-0.5, 3, 0.25, 9, -1.5, np.sin(-0.5), np.sin(3)]]
    assert np.allclose(x, expected)


def test_squares_take_a_name_a_command_line_needs_no_quotes_for(tmp_path: Path) -> None:
    """x1sq, x2sq on the command line; the Playground's x1^2, x2^2 (a Hydra lexer error unquoted)
    still work, as in configs saved with them."""
    points = np.array([[1.5, -2.0]])
    assert np.allclose(expand_features(points, ["x1^2", "x2^2"]), expand_features(points, ["x1sq", "x2sq"]))
    assert np.allclose(expand_features(points, ["x1sq", "x2sq"]), [[2.25, 4.0]])
    old = Playground("circle", n_samples=20, features=["x1", "x1^2"])
    old.check()
    assert old.load(seed=0).feature_names == ["x1", "x1sq"]
    with pytest.raises(ConfigError, match=r"data\.features=\['x1sq', 'x1\^2'\]: lists a feature twice"):
        Playground("circle", features=["x1sq", "x1^2"]).check()
    with pytest.raises(ConfigError, match=r"unknown feature; choose from x1, x2, x1sq, x2sq, x1x2, sin_x1, sin_x2$"):
        Playground("circle", features=["x1**2"]).check()
    args = ("data=circle", "data.features=[x1,x2,x1sq,x2sq]", "data.n_samples=100", "threads=1", "trainer.max_epochs=1")
    result = run_cli("dllab-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_playground_source_maps_labels_to_classes_and_is_seeded() -> None:
    source = Playground("circle", n_samples=100, noise=0.1, features=["x1", "x2", "x1x2"])
    a, b, c = source.load(seed=3), source.load(seed=3), source.load(seed=4)
    assert a.x.shape == (100, 3) and a.x.dtype == np.float32 and a.y.dtype == np.int64
    assert set(np.unique(a.y)) == {0, 1} and a.class_names == ["-1", "+1"]
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert a.points is not None and np.allclose(a.x[:, :2], a.points)
    regression = Playground("plane", n_samples=50).load(seed=0)
    assert regression.y.shape == (50, 1) and regression.num_outputs == 1
    assert source.task == "classification" and Playground("plane").task == "regression"
    assert source.image_shape is None and not source.mirrored


def test_function_set_points_are_its_inputs() -> None:
    data = FunctionSet(fn="square", n_samples=30).load(seed=0)
    assert data.points is not None and data.points.shape == (30, 1)
    assert np.allclose(data.x, data.points) and np.allclose(data.y[:, 0], data.points[:, 0] ** 2, atol=1e-4)


SKLEARN_SIZES = {"iris": 150, "wine": 178, "breast_cancer": 569, "digits": 1797, "diabetes": 442}


@pytest.mark.parametrize("name", list(SKLEARN_SETS))
def test_sklearn_sets_load_offline(name: str) -> None:
    source = SklearnSet(name)
    data = source.load(seed=0)
    assert len(data.x) == SKLEARN_SIZES[name]
    assert data.task == SKLEARN_SETS[name] == source.task
    assert data.image_shape == source.image_shape
    if name == "digits":
        assert data.image_shape == (1, 8, 8) and data.x.shape[1] == 64
        assert data.x.min() >= 0 and data.x.max() <= 1
        assert data.num_outputs == 10
