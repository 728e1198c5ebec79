import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipelines.config import TemplateSpec as Spec
from pipelines.export import OpenVinoPredictor, export_ir
from pipelines.inference import InputSpec, postprocess, preprocess
from pipelines.models.maskrcnn import InferenceGraph, build_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    spec = Spec(engine="torchvision", backbone="resnet18", input_size=96, pretrained="none", epochs=1, batch_size=1,
                lr=0.01, momentum=0.9, weight_decay=0, warmup_iters=1, schedule="constant", grad_clip=0,
                fpn_channels=32, anchor_sizes=[8, 16, 32, 64, 128], rpn_proposals=[100, 40], rois_per_image=32,
                box_head_width=64, mask_head_channels=[32], score_threshold=0.0)  # random weights: keep everything
    torch.manual_seed(0)
    graph = InferenceGraph(build_model(spec, 2))
    rng = np.random.default_rng(0)
    example, _ = preprocess(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8), InputSpec(size=96))
    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    export_ir(graph, example, ["cat", "dog"], InputSpec(size=96).to_dict(), 0.0, xml)
    return graph, xml, rng


def test_ir_matches_pytorch(exported):
    graph, xml, rng = exported
    batch, _ = preprocess(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), InputSpec(size=96))
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(batch))]
    got = OpenVinoPredictor(xml)(batch)
    assert len(got[1]) == len(expected[1]) > 0
    for ours, theirs in zip(got, expected):
        assert np.allclose(ours, theirs, atol=1e-3)


def test_ir_carries_its_metadata(exported):
    _, xml, _ = exported
    predictor = OpenVinoPredictor(xml)
    assert predictor.labels == ["cat", "dog"]
    assert predictor.input_spec["size"] == 96 and predictor.input_spec["resize_mode"] == "letterbox"
    assert predictor.score_threshold == 0.0


def test_ir_runs_on_grayscale_non_square_and_large_images(exported):
    _, xml, rng = exported
    predictor = OpenVinoPredictor(xml)
    for shape in ((30, 200), (500, 120), (96, 96)):
        gray = np.repeat(rng.integers(0, 255, shape + (1,), dtype=np.uint8), 3, axis=2)
        batch, scale = preprocess(gray, InputSpec(size=96))
        results = postprocess(predictor(batch), scale, shape[0], shape[1], 1, 0.0)
        for r in results:
            x, y, w, h = r["bbox"]
            assert 0 <= x and x + w <= shape[1] + 1e-3 and 0 <= y and y + h <= shape[0] + 1e-3


def test_ir_runs_without_training_code(exported):
    """The IR and openvino alone: a fresh process that imports nothing of this project."""
    _, xml, _ = exported
    code = (f"import json, numpy as np, openvino as ov; m = ov.Core().read_model({str(xml)!r}); "
            "print(json.loads(m.get_rt_info(['model_info', 'labels']).astype(str))); "
            "c = ov.Core().compile_model(m, 'CPU'); print(len(c(np.zeros((1, 3, 96, 96), np.float32))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=xml.parent)
    assert out.stdout.split("\n")[:2] == ["['cat', 'dog']", "4"]
