"""The race's stages on one cell, as DVC runs them: the first leg to the rung, the verdict, then the rest of the
schedule from the rung's checkpoint (byte for byte the unraced run's), or, for a stopped template, the stopped
record that evaluate, export and validate pass on without a test look and the report lists as stopped."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import cells, legs
from stages import evaluate, export, race, train, validate


@pytest.fixture
def project(tmp_path, tiny_project, monkeypatch):
    """A working folder with params.yaml (tiny, 2 epochs, raced at half) and a prepared WGISD."""
    def raced(params):
        params["export"]["precisions"] = ["fp32"]
        params["race"] = {"enabled": True, "rung": 0.5, "margin": 0.0, "keep": []}
    tiny_project(tmp_path, epochs=2, edit=raced)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cell_args(name: str) -> list:
    return ["--template", "tiny", "--seed", "0", "--data", "prepared"] + (
        ["--out", f"models/{name}", "--metrics", f"metrics/{name}"] if name else [])


def epochs_of(metrics: Path) -> list:
    """validation.json's epochs without their seconds (timings differ between runs)."""
    return [{k: v for k, v in e.items() if k != "seconds"}
            for e in json.loads((metrics / cells.VALIDATION_FILE).read_text())["epochs"]]


@pytest.mark.slow
def test_a_raced_cell_goes_on_from_its_rung_byte_for_byte_as_an_unraced_run(project):
    train.main(cell_args("unraced"))
    train.main(cell_args("") + ["--rung-out", "race/rung/tiny-wgisd_5-seed0"])
    rung = project / "race/rung/tiny-wgisd_5-seed0"
    assert (rung / cells.RESUME_FILE).is_file() and not (rung / cells.MODEL_FILE).exists()
    # Up to its rung the raced cell is the unraced one: the same epoch, numbers and replicates.
    assert epochs_of(rung) == epochs_of(project / "metrics/unraced")[:1]
    race.main(["--template", "tiny", "--rungs", "race/rung", "--out", "race/verdict/tiny.json"])
    assert json.loads((project / "race/verdict/tiny.json").read_text()) == {"template": "tiny", "continues": True}
    train.main(cell_args("raced") + ["--rung", str(rung), "--verdict", "race/verdict/tiny.json"])
    assert (project / "models/raced/model.pt").read_bytes() == (project / "models/unraced/model.pt").read_bytes()
    assert epochs_of(project / "metrics/raced") == epochs_of(project / "metrics/unraced")
    steps = (project / "metrics/raced" / cells.VAL_SEGM_CURVE).read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in steps] == [1, 2]  # DVCLive's curve holds both legs' epochs, once
    trained = json.loads((project / "metrics/raced" / cells.TRAINING_FILE).read_text())
    rung_seconds = json.loads((rung / cells.TRAINING_FILE).read_text())["train_seconds"]
    assert trained["epochs_run"] == 2 and trained["train_seconds"] > rung_seconds  # both legs' time counts


STOPPED = {"template": "tiny", "stopped_at_epoch": 1, "of_epochs": 2, "rung": 0.5, "leader": "other",
           "behind": {"difference": 4.0, "low": 1.5, "high": 6.5, "p_better": 0.999}}


@pytest.mark.slow
def test_a_stopped_cell_writes_every_output_as_stopped_and_nothing_looks_at_test(project, monkeypatch):
    name = "tiny-wgisd_5-seed0"
    train.main(cell_args("") + ["--rung-out", f"race/rung/{name}"])
    (project / "race/verdict").mkdir(parents=True)
    (project / "race/verdict/tiny.json").write_text(json.dumps(STOPPED))
    train.main(cell_args(name) + ["--rung", f"race/rung/{name}", "--verdict", "race/verdict/tiny.json"])
    model, metrics = project / "models" / name / cells.MODEL_FILE, project / "metrics" / name
    assert legs.read_stopped(model)["stopped_at_epoch"] == 1
    assert epochs_of(metrics) == epochs_of(project / "race/rung" / name)
    assert json.loads((metrics / cells.TRAINING_FILE).read_text())["stopped_at_epoch"] == 1
    assert (metrics / cells.RECIPE_FILE).is_file() and (metrics / cells.VAL_SEGM_CURVE).is_file()

    def no_test_look(*args, **kwargs):
        raise AssertionError("a stopped cell was scored")
    monkeypatch.setattr(evaluate, "score", no_test_look)
    monkeypatch.setattr(validate, "score", no_test_look)
    test, val = "prepared/test.json", "prepared/val.json"
    evaluate.main(["--template", "tiny", "--model", str(model), "--test", test, "--val", val,
                   "--out", str(metrics / "pytorch.json"), "--replicates", str(metrics / "pytorch_bootstrap.json"),
                   "--per-class", str(metrics / "per_class.json"), "--errors", str(metrics / "pytorch_errors.json"),
                   "--examples", str(metrics / "predictions.jpg"), "--error-examples", str(metrics / "errors.jpg")])
    export.main(["--template", "tiny", "--model", str(model), "--data", "prepared", "--out", f"models/{name}/ir"])
    xml = project / "models" / name / "ir/fp32/model.xml"
    assert not xml.exists() and legs.read_stopped(xml)["stopped_at_epoch"] == 1
    validate.main(["--ir", str(xml), "--test", test, "--val", val, "--out", str(metrics / "ir_fp32.json"),
                   "--replicates", str(metrics / "ir_fp32_bootstrap.json"),
                   "--errors", str(metrics / "ir_fp32_errors.json")])
    for runtime in ("pytorch", "ir_fp32"):
        assert json.loads((metrics / f"{runtime}.json").read_text())["stopped_at_epoch"] == 1
        assert json.loads((metrics / f"{runtime}_bootstrap.json").read_text()) == {}
    assert (metrics / "predictions.jpg").stat().st_size > 0 and (metrics / "errors.jpg").stat().st_size > 0
    # A real checkpoint is never read as a stopped record.
    assert legs.read_stopped(project / "race/rung" / name / cells.RESUME_FILE) is None
    torch.save({"model": {}}, project / "real.pt")
    assert legs.read_stopped(project / "real.pt") is None


def test_a_halving_race_writes_each_templates_verdict_and_why(tmp_path, tiny_project, monkeypatch):
    """Three templates tied at the rung (within the validation images' noise), eta 3: the leader goes on, the other
    two are stopped for budget, each verdict naming its place."""
    def three(params):
        params["templates"] = {name: params["templates"]["tiny"] for name in ("a", "b", "c")}
        params["run"]["templates"] = {"torchvision": ["a", "b", "c"], "mmdet": []}
        params["race"] = {"enabled": True, "rung": 0.5, "margin": 0.0, "eta": 3, "keep": []}
    tiny_project(tmp_path, epochs=4, edit=three)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name, level in (("a", 30.0), ("b", 29.8), ("c", 29.6)):
        rung = tmp_path / "race/rung" / f"{name}-wgisd_5-seed0"
        rung.mkdir(parents=True)
        epochs = [{"epoch": e, "segm_map": level * e / 2, "seconds": 1.0,
                   "replicates": list(level * e / 2 + rng.normal(0, 4, 200))} for e in (1, 2)]
        (rung / cells.VALIDATION_FILE).write_text(json.dumps({"resamples": 200, "seed": 0, "epochs": epochs}))
        (rung / cells.TRAINING_FILE).write_text(json.dumps({"epochs": 4}))
    found = {}
    for name in ("a", "b", "c"):
        race.main(["--template", name, "--rungs", "race/rung", "--out", f"race/verdict/{name}.json"])
        found[name] = json.loads((tmp_path / f"race/verdict/{name}.json").read_text())
    assert found["a"] == {"template": "a", "continues": True}
    for name, place in (("b", 2), ("c", 3)):
        assert found[name]["why"] == "halving" and (found[name]["place"], found[name]["of"]) == (place, 3)
        assert found[name]["stopped_at_epoch"] == 2 and not found[name]["behind"]["low"] > 0
