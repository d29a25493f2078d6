"""``dllab-landscape``: loss landscapes and activation curves, as PNG files.

::

    dllab-landscape                       # the lecture's two-parameter model (two_param.png)
    dllab-landscape ckpt_path=<run>/checkpoints/best.ckpt   # a 2-D slice around trained weights
    dllab-landscape activations           # each activation and its derivative (activations.png)

Options (``key=value``): ``out`` (folder; default the run dir for ``ckpt_path``, else
``$DLLAB_LOG_DIR/landscape`` or ``logs/landscape``), ``seed``, ``resolution`` (grid points per
axis); for ``ckpt_path`` also ``split`` (train, val or test; default train) and ``span``
(the slice covers -span..span along both directions; default 1); for the two-parameter
model ``steps``, ``sgd_lr``, ``momentum`` and ``adam_lr``; for every command ``threads`` (torch
threads for the process, as dllab-train's ``threads``; default torch's, all cores).

The two-parameter model is the lecture's: y = θ1·x + θ2 with θ* = [3, 2], fitted by mean
squared error on two datasets whose inputs are distributed differently (centred, x ~ N(0, 1);
shifted, x ~ N(4, 1)). The minimum is the same, but the bowl around it is round in one case
and a long, narrow valley in the other (the Hessian 2·E[(x, 1)(x, 1)ᵀ] is ill-conditioned when
E[x] is far from 0), and SGD, SGD with momentum and Adam, started at the same point with the
same settings, take visibly different paths.

The slice around a trained network follows Li et al. (2018), "Visualizing the Loss Landscape
of Neural Nets": two random Gaussian directions, each filter (each output unit's row of a
weight matrix) rescaled to the norm of the same filter of the trained weights, biases and
batch-norm parameters left out (direction 0); the loss is evaluated at θ + α·d1 + β·d2.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THETA_STAR = (3.0, 2.0)
START = (-1.0, -3.0)
# Input distributions of the two datasets: (name, mean, std).
TWO_PARAM_DATASETS = (("centred", 0.0, 1.0), ("shifted", 4.0, 1.0))
COMMANDS = ("two_param", "activations")


# --- the lecture's two-parameter model -------------------------------------------------------


def two_param_data(
    mean: float, std: float, n: int = 200, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(mean, std²), y = θ*1·x + θ*2 + N(0, noise²)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, std, n)
    return x, THETA_STAR[0] * x + THETA_STAR[1] + rng.normal(0.0, noise, n)


def two_param_loss(x: np.ndarray, y: np.ndarray, theta1: np.ndarray, theta2: np.ndarray) -> np.ndarray:
    """Mean squared error of y = θ1·x + θ2 for every (θ1, θ2) pair of the broadcast arrays,
    from the data's moments (exact, and the same cost for any number of samples)."""
    sxx, sx, sxy, sy, syy = (float(v) for v in (np.mean(x * x), np.mean(x), np.mean(x * y), np.mean(y), np.mean(y * y)))
    t1, t2 = np.asarray(theta1, dtype=float), np.asarray(theta2, dtype=float)
    return t1 * t1 * sxx + 2 * t1 * t2 * sx + t2 * t2 - 2 * t1 * sxy - 2 * t2 * sy + syy


def optimizer_paths(
    x: np.ndarray,
    y: np.ndarray,
    start: Sequence[float] = START,
    steps: int = 100,
    sgd_lr: float = 0.04,
    momentum: float = 0.9,
    adam_lr: float = 0.1,
) -> dict[str, np.ndarray]:
    """(steps + 1, 2) paths of torch's SGD, SGD with momentum and Adam on the full-batch
    mean squared error of y = θ1·x + θ2, all from ``start``."""
    import torch

    xt, yt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    makers = {
        "SGD": lambda p: torch.optim.SGD(p, lr=sgd_lr),
        "SGD+momentum": lambda p: torch.optim.SGD(p, lr=sgd_lr, momentum=momentum),
        "Adam": lambda p: torch.optim.Adam(p, lr=adam_lr),
    }
    paths = {}
    for name, make in makers.items():
        theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        optimizer = make([theta])
        path = [theta.detach().clone().numpy()]
        for _ in range(steps):
            loss = ((theta[0] * xt + theta[1] - yt) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            path.append(theta.detach().clone().numpy())
        paths[name] = np.array(path)
    return paths


@dataclass
class TwoParamCase:
    name: str
    x: np.ndarray
    y: np.ndarray
    theta1: np.ndarray
    theta2: np.ndarray
    loss: np.ndarray  # (len(theta2), len(theta1))
    paths: dict[str, np.ndarray]

    @property
    def grid_minimum(self) -> tuple[float, float]:
        row, column = np.unravel_index(int(self.loss.argmin()), self.loss.shape)
        return float(self.theta1[column]), float(self.theta2[row])

    @property
    def condition_number(self) -> float:
        hessian = 2 * np.array([[np.mean(self.x * self.x), np.mean(self.x)], [np.mean(self.x), 1.0]])
        eigenvalues = np.linalg.eigvalsh(hessian)
        return float(eigenvalues[-1] / eigenvalues[0])


def two_param_cases(resolution: int = 121, seed: int = 0, **path_options: Any) -> list[TwoParamCase]:
    """Both datasets, their loss grids over θ1 ∈ [-2, 8], θ2 ∈ [-4, 8] and the optimizer paths."""
    theta1 = np.linspace(THETA_STAR[0] - 5, THETA_STAR[0] + 5, resolution)
    theta2 = np.linspace(THETA_STAR[1] - 6, THETA_STAR[1] + 6, resolution)
    t1, t2 = np.meshgrid(theta1, theta2)
    cases = []
    for i, (name, mean, std) in enumerate(TWO_PARAM_DATASETS):
        x, y = two_param_data(mean, std, seed=seed + i)
        loss = two_param_loss(x, y, t1, t2)
        cases.append(TwoParamCase(name, x, y, theta1, theta2, loss, optimizer_paths(x, y, **path_options)))
    return cases


def two_param_figure(cases: Sequence[TwoParamCase]) -> Any:
    from dllab.pictures import plots

    return plots.two_param_figure(
        [
            {
                "theta1": c.theta1,
                "theta2": c.theta2,
                "loss": c.loss,
                "paths": c.paths,
                "start": START,
                "optimum": THETA_STAR,
                "title": f"{c.name}: x ~ N({np.mean(c.x):.1f}, {np.std(c.x):.1f}²), "
                f"condition number {c.condition_number:.0f}",
            }
            for c in cases
        ]
    )


# --- a 2-D slice around trained weights (Li et al., 2018) -------------------------------------


def filter_normalized_direction(params: Mapping[str, Any], generator: Any) -> dict[str, Any]:
    """A random direction shaped like ``params``: Gaussian, each filter (row of a weight
    matrix, i.e. one output unit) scaled to the norm of the same filter of ``params``;
    vectors (biases, batch-norm scales and shifts) get 0, as in Li et al.'s figures."""
    import torch

    direction = {}
    for name, p in params.items():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        r = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        rows, weights = r.reshape(r.shape[0], -1), p.reshape(p.shape[0], -1)
        scale = weights.norm(dim=1, keepdim=True) / (rows.norm(dim=1, keepdim=True) + 1e-10)
        direction[name] = (rows * scale).reshape(p.shape)
    return direction


def loss_slice(
    net: Any, criterion: Any, x: Any, y: Any, resolution: int = 31, span: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss of ``net`` on (x, y) at θ + α·d1 + β·d2 over an α, β grid in [-span, span]²;
    returns α, β and the (β, α) loss grid. The network itself is not changed."""
    import torch
    from torch.func import functional_call

    net = net.eval()
    params = {name: p.detach() for name, p in net.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(params, generator)
    d2 = filter_normalized_direction(params, generator)
    alphas = np.linspace(-span, span, resolution)
    betas = np.linspace(-span, span, resolution)
    steps = torch.as_tensor(alphas, dtype=next(iter(params.values())).dtype)

    def loss_at(moved: dict[str, Any]) -> Any:
        return criterion(functional_call(net, moved, (x,)), y)

    loss = np.zeros((resolution, resolution))
    with torch.no_grad():
        for i, beta in enumerate(betas):  # one vectorized call per row: all alphas at once
            row = {k: p + steps.view(-1, *[1] * p.dim()) * d1[k] + float(beta) * d2[k] for k, p in params.items()}
            loss[i] = torch.vmap(loss_at)(row).cpu().numpy()
    return alphas, betas, loss


def checkpoint_slice(
    ckpt_path: str | Path, split: str = "train", resolution: int = 31, span: float = 1.0, seed: int = 0
) -> dict[str, Any]:
    """The slice for a finished run: its module from the checkpoint, its data (same split,
    same scaling) from the run's config.yaml."""

    from dllab.checkpoints import read_checkpoint
    from dllab.evaluate import load_run

    checkpoint = read_checkpoint(ckpt_path)
    module, datamodule, run_dir = load_run(ckpt_path, checkpoint)  # set up, and checked to fit the checkpoint
    if split not in datamodule.arrays:
        raise ValueError(f"split={split}: choose one of {', '.join(datamodule.arrays)}")
    x, y = datamodule.tensors(split)  # as in training: images as (N, C, H, W)
    alphas, betas, loss = loss_slice(module.net, module.criterion, x, y, resolution, span, seed)
    epoch = int(checkpoint.get("epoch", -1)) + 1  # which model: epochs done, from 1
    return {
        "run_dir": run_dir,
        "alphas": alphas,
        "betas": betas,
        "loss": loss,
        "data": datamodule.data_name,
        "epoch": epoch,
    }


# --- activations ---------------------------------------------------------------------------


def activation_curves(x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each supported activation f(x) and its derivative f'(x) (by autograd)."""
    import torch

    from dllab.catalog import ACTIVATIONS
    from dllab.models.activations import ACTIVATION_LAYERS

    curves = {}
    for name in ACTIVATIONS:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        out = ACTIVATION_LAYERS[name]()(t)
        (grad,) = torch.autograd.grad(out.sum(), t)
        curves[name] = (out.detach().numpy(), grad.numpy())
    return curves


# --- command line ----------------------------------------------------------------------------

USAGE = """  dllab-landscape [two_param] [out=DIR] [seed=0] [resolution=121] [steps=100]
                  [sgd_lr=0.04] [momentum=0.9] [adam_lr=0.1] [threads=N]
  dllab-landscape ckpt_path=RUN/checkpoints/best.ckpt [split=train] [span=1] [resolution=31] [seed=0] [out=RUN]
                  [threads=N]
  dllab-landscape activations [out=DIR] [threads=N]"""


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    command, options = "two_param", {}
    for arg in argv:
        if arg in ("-h", "--help"):
            return "help", {}
        if "=" in arg:
            key, value = arg.split("=", 1)
            options[key.strip()] = value.strip()
        elif arg in COMMANDS:
            command = arg
        else:
            raise ValueError(f"{arg}: unknown command; choose one of {', '.join(COMMANDS)}, or give ckpt_path=...")
    if "ckpt_path" in options:
        command = "ckpt"
    allowed = {
        "two_param": {"out", "seed", "resolution", "steps", "sgd_lr", "momentum", "adam_lr", "threads"},
        "activations": {"out", "threads"},
        "ckpt": {"out", "seed", "resolution", "ckpt_path", "split", "span", "threads"},
    }[command]
    for key in options:
        if key not in allowed:
            raise ValueError(f"{key}: unknown option for {command}; choose from {', '.join(sorted(allowed))}")
    return command, options


def default_out() -> Path:
    return Path(os.environ.get("DLLAB_LOG_DIR", "logs")) / "landscape"


def use_threads(threads: str | None) -> None:
    """``threads=N``: torch uses N threads in this process (checked: a positive integer)."""
    from dllab.checks import check_threads

    value = check_threads(threads)
    if value:
        import torch

        torch.set_num_threads(value)


def number(
    options: Mapping[str, str],
    key: str,
    default: float,
    kind: type = float,
    least: float = 0,
    below: float | None = None,
    above: float | None = None,
) -> Any:
    """``key=value`` as an int or float >= ``least`` (> ``above``, < ``below`` where given);
    ValueError naming the option otherwise."""
    if key not in options:
        return default
    try:
        value = kind(options[key])
    except ValueError:
        value = None
    ok = value is not None and math.isfinite(value) and value >= least
    ok = ok and (above is None or value > above) and (below is None or value < below)
    if not ok:
        what = "an integer" if kind is int else "a number"
        low = f"> {above}" if above is not None else f">= {least}"
        span = f"in [{least}, {below})" if below is not None else low
        raise ValueError(f"{key}={options[key]}: must be {what} {span}")
    return value


# float64 arrays of resolution² values alive at once, the picture's included: the two-parameter
# model's two cases (measured: resolution=3000 peaks 1.3 GiB above resolution=100, 19.5 grids), a
# checkpoint's slice (its loss grid and the two pictures' copies; an estimate)
GRIDS = {"two_param": 20, "ckpt": 8}


def available_memory() -> int | None:
    """Bytes of memory this machine has free (Linux's MemAvailable; else all of it); None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**40:.1f} TiB" if n >= 2**40 else f"{n / 2**30:.1f} GiB"


def check_memory(key: str, value: Any, needed: int, what: str, largest: Any) -> None:
    """Refuse a setting whose arrays need more memory than this machine has free."""
    free = available_memory()
    if free is not None and needed > free:
        raise ValueError(
            f"{key}={value}: needs about {gib(needed)} of memory ({what}), more than the {gib(free)} "
            f"this machine has free; use {key} up to {largest}"
        )


def check_out(out: str | None) -> None:
    """``out`` is a folder: a file there (or above it) cannot hold the pictures."""
    if not out:
        return
    for folder in (Path(out), *Path(out).parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"out={out}: {folder} is a file; give a folder (the pictures are written into it)")
            return


def options_of(command: str, options: Mapping[str, str]) -> dict[str, Any]:
    """Every option of ``command`` checked and converted, before anything is computed or drawn."""
    from dllab.field_checks import check_seed

    use_threads(options.get("threads"))
    check_out(options.get("out"))
    values: dict[str, Any] = {"seed": number(options, "seed", 0, int)}
    check_seed("seed", values["seed"])
    values["resolution"] = number(options, "resolution", 121 if command == "two_param" else 31, int, least=2)
    if command in GRIDS:
        r = values["resolution"]
        grids = GRIDS[command]
        largest = max(2, math.isqrt((available_memory() or 0) // (8 * grids)))
        check_memory("resolution", r, 8 * grids * r * r, f"{grids} grids of {r}² float64 values", largest)
    if command == "two_param":
        values["path_options"] = {k: number(options, k, 0.0, above=0) for k in ("sgd_lr", "adam_lr") if k in options}
        if "momentum" in options:  # 1 or more: the velocity never decays, the path diverges
            values["path_options"]["momentum"] = number(options, "momentum", 0.0, below=1)
        if "steps" in options:
            values["path_options"]["steps"] = number(options, "steps", 0, int, least=1)
    if command == "ckpt":
        values["span"] = number(options, "span", 1.0, above=0)
        values["split"] = options.get("split", "train")
        if values["split"] not in SPLITS:
            raise ValueError(f"split={values['split']}: choose one of {', '.join(SPLITS)}")
    return values


SPLITS = ("train", "val", "test")


def saved(plots: Any, figure: Any, path: Path) -> Path:
    """The picture written, or one line naming the file and why it could not be."""
    try:
        return plots.save(figure, path)
    except OSError as err:
        raise WriteError(f"{path}: not written ({err.strerror or err}); give a writable out=<folder>") from err


class WriteError(Exception):
    """A picture that could not be written (a read-only or full place)."""


def run(argv: Sequence[str]) -> list[Path]:
    """Draw what ``argv`` asks for; return the written files."""
    from dllab.pictures import plots

    command, options = parse(argv)
    if command == "help":
        print(f"{__doc__}\nusage:\n{USAGE}")
        return []
    values = options_of(command, options)
    seed, resolution = values["seed"], values["resolution"]
    if command == "activations":
        x = np.linspace(-4, 4, 401)
        out = Path(options.get("out") or default_out())
        return [saved(plots, plots.activations_figure(x, activation_curves(x)), out / "activations.png")]
    if command == "two_param":
        cases = two_param_cases(resolution, seed, **values["path_options"])
        for case in cases:
            ends = ", ".join(f"{name} ({p[-1, 0]:.2f}, {p[-1, 1]:.2f})" for name, p in case.paths.items())
            minimum = case.grid_minimum
            print(f"{case.name}: grid minimum {minimum}, condition number {case.condition_number:.1f}; ends: {ends}")
        out = Path(options.get("out") or default_out())
        return [saved(plots, two_param_figure(cases), out / "two_param.png")]
    split, span = values["split"], values["span"]
    result = checkpoint_slice(options["ckpt_path"], split, resolution, span, seed)
    out = Path(options.get("out") or result["run_dir"])
    where = f"{Path(options['ckpt_path']).name}, epoch {result['epoch']}"
    title = f"{result['data']}: {split} loss around the trained weights ({where}; Li et al. 2018)"
    print(f"slice around {options['ckpt_path']} (trained for {result['epoch']} epochs)")
    a, b, loss = result["alphas"], result["betas"], result["loss"]
    return [
        saved(plots, plots.landscape_contour_figure(a, b, loss, title), out / "landscape_contour.png"),
        saved(plots, plots.landscape_surface_figure(a, b, loss, title), out / "landscape_surface.png"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``dllab-landscape`` (also ``python -m dllab.landscape``)."""
    from dllab.errors import ConfigError

    try:
        written = run(sys.argv[1:] if argv is None else argv)
    except (ValueError, ConfigError) as err:  # one line; the usage is in dllab-landscape --help
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    for path in written:
        print(f"written: {path}")


if __name__ == "__main__":
    main()
