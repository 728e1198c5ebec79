"""The benchmark scripts keep working as the code they measure changes: each one imports, every name it takes from
the project exists, and its command line parses (running them is measuring, not testing: see docs/measurements.md)."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))


def project_names(path: Path) -> list:
    """(module, attribute) for every `module.attribute` the script reads from a project module it imported."""
    tree, bound = ast.parse(path.read_text()), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pipelines":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(full.split(".")[0]) and _is_module(full):
                    bound[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            bound.update({(a.asname or a.name): a.name for a in node.names if a.name.startswith("pipelines")})
    return [(bound[n.value.id], n.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in bound]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_every_script_is_found():
    assert SCRIPTS == ["cuda_training", "evaluation", "prepare", "pretraining", "racing", "speed", "training"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_imports_and_every_project_name_it_uses_exists(name):
    importlib.import_module(f"benchmarks.{name}")  # a name imported from the project that is gone fails here
    for module, attribute in project_names(ROOT / "benchmarks" / f"{name}.py"):
        assert hasattr(importlib.import_module(module), attribute), f"benchmarks/{name}.py uses {module}.{attribute}"


def test_scripts_run_as_modules_from_the_root():
    for name in SCRIPTS:
        shown = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, capture_output=True,
                               text=True)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (name, shown.stderr[-2000:])
