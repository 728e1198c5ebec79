"""The training engines: each is a package `pipelines/engines/<name>/` (see contract.py for what it provides). A
template names its engine; stages reach its models through `adapter(name)`.

Engines are found by their folders, not listed here: adding one edits no file that every stage depends on, so
DVC reruns nothing of the other engines' cells.
"""

import importlib
import pkgutil
from pathlib import Path

ENGINES = {module.name: f"{__name__}.{module.name}" for module in pkgutil.iter_modules([str(Path(__file__).parent)])
           if module.ispkg}


def get(name: str):
    """The engine's package (its `Adapter` and `INT8_FLOAT_SCOPES`)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {sorted(ENGINES)}")
    return importlib.import_module(ENGINES[name])


def adapter(name: str):
    """The engine's `ModelAdapter` (pipelines.engines.contract)."""
    return get(name).Adapter
