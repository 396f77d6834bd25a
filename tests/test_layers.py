"""The code's layers, read from its imports: synthwave (ground) < gan, tasks < flows < cli."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Each top-level package and the project packages it may import (the ones below it).
LAYERS = {
    "synthwave": set(),
    "gan": {"synthwave"},
    "tasks": {"synthwave"},
    "flows": {"synthwave", "gan", "tasks"},
    "cli": {"synthwave", "gan", "tasks", "flows"},
}
PREFECT_ADAPTER = "tasks/prefect_internals.py"


def modules():
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text())


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path,tree", list(modules()), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else "")
def test_a_module_imports_only_the_layers_below_its_own(path, tree):
    package = path.relative_to(REPO).parts[0]
    above = {name.split(".")[0] for name in imported(tree)} & set(LAYERS) - LAYERS[package] - {package}
    assert not above, f"{path.relative_to(REPO)} imports {sorted(above)}, above its layer {package}"


def test_gan_runs_without_prefect():
    users = [str(p.relative_to(REPO)) for p, t in modules() if p.parts[-2] == "gan"
             and any(n.split(".")[0] == "prefect" for n in imported(t))]
    assert not users


def test_private_prefect_api_is_used_in_one_module_only():
    """A name starting with `_` from a prefect module, or an attribute `_x` of one."""
    users = set()
    for path, tree in modules():
        private = [n for n in imported(tree) if n.startswith("prefect") and any(p.startswith("_") for p in n.split("."))]
        if private:
            users.add(str(path.relative_to(REPO)))
    assert users <= {PREFECT_ADAPTER}, users


def test_module_docstrings_stay_short():
    long = {str(p.relative_to(REPO)): len(d.splitlines()) for p, t in modules()
            if (d := ast.get_docstring(t)) and len(d.splitlines()) > 20}
    assert not long, f"module docstrings over 20 lines (figures belong in docs/): {long}"
