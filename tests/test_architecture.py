"""The layout's rules hold: imports between the units of ``src/dllab`` (subpackages and
top-level modules) run one way, lazy imports included; the low layers do not import the high
ones; the command line stays thin and no module grows past a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dllab"


def unit_of(module: str) -> str:
    """``dllab.training.module`` -> ``training``; ``dllab.train`` -> ``train``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dllab"


def imported_modules(path: Path) -> set[str]:
    """Every ``dllab.*`` module that ``path`` imports, at any depth (function bodies too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # a submodule by name
    return {m for m in found if m.startswith("dllab.") and unit_exists(m)}


def unit_exists(module: str) -> bool:
    name = module.split(".")[1]
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        targets = {unit_of(m) for m in imported_modules(path)} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" on the current path, "done" when fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_one_that_is_there() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_imports_between_units_run_one_way() -> None:
    graph = unit_graph()
    assert {"training", "runs", "sweeps", "stacked", "launchers", "train"} <= set(graph)
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("training", "sweeps"),
        ("training", "pictures"),
        ("training", "runs"),
        ("runs", "launchers"),
        ("runs", "train"),
        ("stacked", "launchers"),
        ("sweeps", "runs"),
    ],
)
def test_a_low_layer_does_not_import_a_high_one(low: str, high: str) -> None:
    assert high not in unit_graph()[low]


def test_no_module_imports_the_command_line() -> None:
    """``dllab.train`` is the command line: libraries and other entry points import dllab.runs."""
    importers = [p for p in PACKAGE.rglob("*.py") if "dllab.train" in imported_modules(p) and p.name != "train.py"]
    assert importers == []


def test_the_command_line_is_thin_and_modules_stay_readable() -> None:
    lines = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert lines["train.py"] < 300
    assert lines["checks.py"] < 700  # the order of the checks; their rules live beside their components
    assert {name for name, n in lines.items() if n > 950} == set()
