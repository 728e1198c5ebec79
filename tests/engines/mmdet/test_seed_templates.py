"""The seed's own templates, as params.yaml defines them on the mmdet engine: OTE's EfficientNet-B2B Mask
R-CNNs (seed 000), OTX 1.x's R50 and ConvNeXt (seed 002), and a zoo config named by its name alone."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.checkpoints import load as load_trained
from pipelines.checkpoints import torch_predictor
from pipelines.complexity import count as count_complexity
from pipelines.config import load_params
from pipelines.engines.mmdet import Adapter
from pipelines.engines.mmdet.model import PretrainedWeightsError, build_model
from pipelines.inference import load_image, preprocess
from pipelines.ir import OpenVinoPredictor
from pipelines.splits import TEST, VAL, split_file

ROOT = Path(__file__).resolve().parents[3]

SEED_TEMPLATES = ("effb2b_480", "effb2b_576", "r50", "convnext", "r101")


def template(name: str, **changes):
    """params.yaml's template `name`, with `changes`."""
    return dataclasses.replace(load_params(ROOT / "params.yaml").templates[name], **changes)


def untrained(name: str, **changes):
    """The template's architecture from random weights (its COCO snapshot is not on this machine)."""
    spec = template(name, **{"pretrained": "none", **changes})
    return dataclasses.replace(spec, model={k: v for k, v in spec.model.items() if k != "pretrained_sha256"})


@pytest.mark.parametrize("name, parameters, published_gflops", [("effb2b_480", 10_274_818, 14.8),
                                                                ("effb2b_576", 13_274_626, 26.92)])
def test_ote_effb2b_has_the_seeds_size(name, parameters, published_gflops):
    """With COCO's 80 classes: the seed's parameter count exactly, and GFLOPs (2 x multiply-accumulates, the RoI
    heads on 1000 / 100 boxes) within 10% of its published figure, whose counter also counted batch norms,
    activations and pooling."""
    model = build_model(untrained(name), num_classes=80)
    assert sum(p.numel() for p in model.parameters()) == parameters
    counted = count_complexity(model, Adapter, template(name).input_size)
    assert abs(counted["gflops"] / published_gflops - 1) <= 0.10, counted


@pytest.fixture(scope="module")
def ote_snapshot(tmp_path_factory):
    """A COCO snapshot in the layout of OTE's (mmdet 2.x) checkpoints: `state_dict` with the detector's keys
    (the backbone's under `backbone.features.`, pytorchcv's names), `meta` with the 80 class names."""
    torch.manual_seed(0)
    coco = build_model(untrained("effb2b_480"), num_classes=80)
    path = tmp_path_factory.mktemp("snapshot") / "efficientnet_b2b-mask_rcnn-480x480.pth"
    torch.save({"meta": {"mmdet_version": "2.9.1", "CLASSES": [f"class{i}" for i in range(80)]},
                "state_dict": coco.state_dict()}, path)
    return coco.state_dict(), path


def test_ote_snapshot_loads_with_class_layers_rebuilt_and_everything_else(ote_snapshot, capsys):
    state, path = ote_snapshot
    torch.manual_seed(1)
    model = build_model(untrained("effb2b_480", pretrained=str(path)), num_classes=3)
    printed = capsys.readouterr().out
    rebuilt = {k for k, v in model.state_dict().items() if not torch.equal(v, state[k])}
    assert rebuilt == {"roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias",
                       "roi_head.bbox_head.fc_reg.weight", "roi_head.bbox_head.fc_reg.bias",
                       "roi_head.mask_head.conv_logits.weight", "roi_head.mask_head.conv_logits.bias"}
    assert model.roi_head.bbox_head.fc_cls.out_features == 4  # 3 classes + background
    assert all(key in printed for key in rebuilt) and "not in the checkpoint" not in printed


def test_ote_snapshot_of_another_shape_or_lacking_a_backbone_tensor_is_refused(ote_snapshot, tmp_path):
    state, _ = ote_snapshot
    reshaped = dict(state)
    reshaped["neck.lateral_convs.0.conv.weight"] = torch.zeros(64, 24, 1, 1)
    torch.save({"state_dict": reshaped}, tmp_path / "reshaped.pth")
    with pytest.raises(PretrainedWeightsError, match=r"lateral_convs\.0\.conv\.weight has shape \[64, 24, 1, 1\]"):
        build_model(untrained("effb2b_480", pretrained=str(tmp_path / "reshaped.pth")), 3)
    lacking = {k: v for k, v in state.items() if k != "backbone.features.stage3.unit1.conv1.conv.weight"}
    torch.save({"state_dict": lacking}, tmp_path / "lacking.pth")
    with pytest.raises(PretrainedWeightsError, match=r"lacks 1 backbone/neck .* backbone\.features\.stage3\.unit1"):
        build_model(untrained("effb2b_480", pretrained=str(tmp_path / "lacking.pth")), 3)


def test_every_seed_template_starts_from_a_coco_snapshot_that_make_fetch_brings():
    """Each seed template's `pretrained` is a file of data/raw/snapshots that params.yaml's fetch.snapshots lists,
    pinned by the same sha256 (or its first 8 digits) as the template."""
    fetched = {entry["url"].rsplit("/", 1)[-1]: entry
               for entry in yaml.safe_load((ROOT / "params.yaml").read_text())["fetch"]["snapshots"]}
    for name in SEED_TEMPLATES:
        spec = template(name)
        path = Path(spec.pretrained)
        assert spec.engine == "mmdet" and path.parent == Path("data/raw/snapshots"), name
        assert path.name in fetched and fetched[path.name]["unpack"] is False, name
        pinned, own = fetched[path.name]["sha256"], spec.model.get("pretrained_sha256")
        assert pinned == own or (pinned and own and pinned.startswith(own)), name
    assert template("effb2b_480").model["pretrained_sha256"].startswith("6ceb31ae")
    assert template("r50").pretrained.endswith("-21b550bb.pth")
    assert template("r50").model["pretrained_sha256"] == "21b550bb"
    assert template("r101").model["config"] == "mask-rcnn_r101_fpn_1x_coco"  # a zoo config by its name alone


@pytest.fixture(scope="module")
def wgisd(tmp_path_factory):
    from tests.conftest import prepared_wgisd
    return prepared_wgisd(tmp_path_factory.mktemp("wgisd"), 8, 4)


SMALL_SIZE = 128  # every template here runs at 128 px: one epoch of R-101 at its 1024 would take minutes on 2 cores


@pytest.mark.slow
@pytest.mark.parametrize("name", SEED_TEMPLATES)
def test_seed_template_trains_evaluates_exports_and_validates(name, wgisd, tmp_path, monkeypatch):
    """The train, evaluate, export and validate stages, as dvc.yaml runs them, on the template made small:
    random weights, 128 px, one epoch of 2 steps at lr 0.001, every detection kept (score threshold 0) so that
    there is plenty to compare; the IR predicts what PyTorch does and scores the same mAP within 0.5."""
    from stages import evaluate, export, train, validate
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    spec = params["templates"][name]
    spec["model"].pop("pretrained_sha256", None)
    # lr 0.001: the recipes' rates are for their COCO starts; from random weights (and std 1) they diverge
    spec.update(pretrained="none", input_size=SMALL_SIZE, epochs=1, batch_size=2, dataset_repeats=1, lr=0.001,
                warmup_iters=1, score_threshold=0.0)
    params["export"]["precisions"] = ["fp32"]
    params["confidence"]["resamples"] = 20
    params["speed"].update(warmup=0, repeats=1, throughput_seconds=0.1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    model, metrics = tmp_path / "model", tmp_path / "metrics"
    train.main(["--template", name, "--seed", "0", "--data", str(wgisd), "--out", str(model),
                "--metrics", str(metrics)])
    splits = ["--test", str(split_file(wgisd, TEST)), "--val", str(split_file(wgisd, VAL))]
    evaluate.main(["--template", name, "--model", str(model / "model.pt"), *splits, "--out", str(metrics / "pt.json"),
                   "--replicates", str(metrics / "pt_boot.json"), "--per-class", str(metrics / "per_class.json"),
                   "--errors", str(metrics / "pt_errors.json"), "--examples", str(metrics / "examples.jpg"),
                   "--error-examples", str(metrics / "errors.jpg")])
    export.main(["--template", name, "--model", str(model / "model.pt"), "--data", str(wgisd),
                 "--out", str(model / "ir")])
    validate.main(["--ir", str(model / "ir" / "fp32" / "model.xml"), *splits, "--out", str(metrics / "ir.json"),
                   "--replicates", str(metrics / "ir_boot.json"), "--errors", str(metrics / "ir_errors.json")])
    pytorch, ir = (json.loads((metrics / f).read_text()) for f in ("pt.json", "ir.json"))
    assert abs(pytorch["segm_map"] - ir["segm_map"]) <= 0.5 and abs(pytorch["bbox_map"] - ir["bbox_map"]) <= 0.5
    # The predictions themselves, on a test image.
    loaded = load_trained(model / "model.pt", Adapter)
    image = load_image(wgisd / json.loads(split_file(wgisd, TEST).read_text())["images"][0]["file_name"])
    batch, _ = preprocess(image, loaded.input_spec)
    expected = torch_predictor(loaded.graph)(batch)
    got = OpenVinoPredictor(model / "ir" / "fp32" / "model.xml")(batch)
    assert len(expected[1]) > 0 and len(got[1]) == len(expected[1])
    assert np.allclose(got[0], expected[0], atol=1e-2) and np.allclose(got[1], expected[1], atol=1e-4)


def test_preflight_names_every_missing_dataset_and_snapshot(monkeypatch, tmp_path, capsys):
    from pipelines import preflight

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.chdir(ROOT)  # the project's params.yaml, its snapshots moved to where nothing was fetched
    params = load_params(ROOT / "params.yaml")
    snapshots = {name: dataclasses.replace(spec, pretrained=str(tmp_path / "snapshots" / Path(spec.pretrained).name))
                 for name, spec in params.templates.items() if name in ("effb2b_480", "r50")}
    params = dataclasses.replace(params, templates={**params.templates, **snapshots})
    monkeypatch.setattr(preflight, "load_params", lambda path: params)
    with pytest.raises(SystemExit) as stopped:
        preflight.main(["--data-dir", str(tmp_path / "raw"), "--templates", "effb2b_480,r50"])
    printed = capsys.readouterr().out
    assert stopped.value.code == 1 and "7 missing" in printed
    for place in ("raw/cityscapes ", "raw/pets ", "raw/wgisd ",
                  "snapshots/efficientnet_b2b-mask_rcnn-480x480.pth does not exist. `make fetch`",
                  "snapshots/mask_rcnn_r50_fpn_mstrain-poly_3x_coco_20210524_201154-21b550bb.pth does not exist"):
        assert place in printed, place
