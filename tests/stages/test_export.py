"""The export stage, and evaluate and validate after it, on a model that detects nothing: a weak template is a
result, scored 0, not a failed experiment."""

import json
from types import SimpleNamespace

import torch

from pipelines import checkpoints, engines
from pipelines.splits import TEST, TRAIN, VAL, split_file
from stages import evaluate, export, validate
from tests.conftest import prepared_wgisd


def test_a_model_that_detects_nothing_exports_and_scores_zero(engine_spec, tmp_path, monkeypatch):
    data = prepared_wgisd(tmp_path, 8, 3)
    # Scores are at most 1: a threshold of 1 keeps nothing on any image, as a template trained too briefly does.
    spec = engine_spec(score_threshold=1.0)
    labels = [c["name"] for c in json.loads(split_file(data, TRAIN).read_text())["categories"]]
    torch.manual_seed(0)
    checkpoints.save(tmp_path / "model.pt", engines.adapter(spec.engine).build(spec, len(labels)).state_dict(), spec,
                     labels, epoch=1)
    params = SimpleNamespace(templates={"weak": spec}, export={"precisions": ["fp32"], "calibration_images": 2},
                             confidence={"resamples": 20, "seed": 0},
                             speed={"warmup": 0, "repeats": 1, "throughput_seconds": 0.1})
    for stage in (export, evaluate, validate):
        monkeypatch.setattr(stage, "load_params", lambda: params)
    splits = ["--test", str(split_file(data, TEST)), "--val", str(split_file(data, VAL))]
    export.main(["--template", "weak", "--model", str(tmp_path / "model.pt"), "--data", str(data),
                 "--out", str(tmp_path / "ir")])
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["fp32"]
    assert sorted(p.name for p in (tmp_path / "ir" / "fp32").iterdir()) == ["model.bin", "model.xml"]
    validate.main(["--ir", str(tmp_path / "ir" / "fp32" / "model.xml"), *splits, "--out", str(tmp_path / "ir.json"),
                   "--replicates", str(tmp_path / "ir_bootstrap.json"), "--errors", str(tmp_path / "ir_errors.json")])
    evaluate.main(["--template", "weak", "--model", str(tmp_path / "model.pt"), *splits,
                   "--out", str(tmp_path / "pytorch.json"), "--replicates", str(tmp_path / "pytorch_bootstrap.json"),
                   "--per-class", str(tmp_path / "per_class.json"), "--errors", str(tmp_path / "pytorch_errors.json"),
                   "--examples", str(tmp_path / "predictions.jpg"), "--error-examples", str(tmp_path / "errors.jpg")])
    for runtime in ("ir", "pytorch"):
        metrics = json.loads((tmp_path / f"{runtime}.json").read_text())
        assert metrics["segm_map"] == metrics["bbox_map"] == metrics["segm_map_low"] == metrics["segm_map_high"] == 0
        assert metrics["deploy_threshold"] is None and metrics["deploy_f1"] == 0
        assert json.loads((tmp_path / f"{runtime}_errors.json").read_text())["segm"]["ap50"] == 0
    assert (tmp_path / "predictions.jpg").stat().st_size and (tmp_path / "errors.jpg").stat().st_size
    assert not list(tmp_path.glob(".*.tmp*"))  # nothing staged is left behind
