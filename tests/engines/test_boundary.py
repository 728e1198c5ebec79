"""The engine boundary: only an engine's own folder imports its training library."""

import ast
from pathlib import Path

from pipelines.engines import ENGINES

ROOT = Path(__file__).resolve().parents[2]
# The libraries each engine's folder may import (the mmdet engine runs mmcv's nms and roi_align on
# torchvision's kernels, and puts those into its exported graph); no other project module imports any of them.
LIBRARIES = {"torchvision": {"torchvision"}, "mmdet": {"mmdet", "mmcv", "mmengine", "torchvision"}}


def imported_packages(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_engine_is_a_registered_folder():
    for name, module in ENGINES.items():
        assert module == f"pipelines.engines.{name}" and (ROOT / "pipelines" / "engines" / name / "__init__.py").is_file()


def test_only_an_engines_folder_imports_its_library():
    wrapped = set().union(*LIBRARIES.values())
    offenders = []
    for path in sorted([*(ROOT / "pipelines").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]):
        parts = path.relative_to(ROOT / "pipelines").parts if path.is_relative_to(ROOT / "pipelines") else ()
        engine = parts[1] if len(parts) > 2 and parts[0] == "engines" else None
        allowed = LIBRARIES.get(engine, set())
        offenders += [f"{path.relative_to(ROOT)} imports {p}" for p in imported_packages(path) & wrapped - allowed]
    assert offenders == []


def test_a_third_engine_is_a_folder_and_one_registry_line(tmp_path, monkeypatch, tiny_spec):
    """An engine whose folder re-uses torchvision's models under another name: registered by one line, the
    stages' functions train, load and measure it without knowing it."""
    from pipelines import checkpoints, complexity, engines, training
    from pipelines.config import DatasetSpec
    from pipelines.datasets import demo
    from pipelines.datasets.prepare import prepare

    folder = tmp_path / "third_engine"
    folder.mkdir()
    (folder / "__init__.py").write_text("from pipelines.engines.torchvision import Adapter, INT8_FLOAT_SCOPES\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engines.ENGINES, "third", "third_engine")
    demo.make_wgisd(tmp_path / "raw", 8, 4, seed=0)
    prepare(DatasetSpec("wgisd", "raw", {"train": "train", "test": "test"}, val_ratio=0.25), tmp_path / "raw",
            tmp_path / "prepared")
    adapter = engines.adapter("third")
    result = training.fit(tiny_spec(engine="third"), adapter, tmp_path / "prepared", tmp_path / "model", seed=0,
                          log=lambda m: None)
    assert result.best_epoch == 1
    loaded = checkpoints.load(tmp_path / "model" / "model.pt", adapter)
    assert loaded.labels == ["grape"] and loaded.input_spec.size == 96
    model, spec, _ = checkpoints.restore(tmp_path / "model" / "model.pt", adapter)
    assert complexity.count(model, adapter, spec.input_size)["params_m"] > 11
