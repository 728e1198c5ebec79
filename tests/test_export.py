import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.config import TemplateSpec
from pipelines.inference import InputSpec, postprocess, preprocess
from pipelines.ir import OpenVinoPredictor, execution_precision
from pipelines.engines.torchvision.model import InferenceGraph, build_model
from tests.conftest import export_test_irs

SPEC = TemplateSpec(engine="torchvision", input_size=96, epochs=1, batch_size=1, lr=0.01,
                    model=dict(backbone="resnet18", fpn_channels=32, anchor_sizes=[8, 16, 32, 64, 128],
                               rpn_proposals=[100, 40], rois_per_image=32, box_head_width=64, mask_head_channels=[32]),
                    score_threshold=0.0)  # random weights: keep every detection so there is something to compare


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    graph = InferenceGraph(build_model(SPEC, 2))
    folder = tmp_path_factory.mktemp("ir")
    rng = export_test_irs(graph, folder, ("rpn", "roi_heads"))
    return graph, folder, rng


def test_fp32_ir_matches_pytorch(exported):
    graph, folder, rng = exported
    batch, _ = preprocess(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), InputSpec(size=96))
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(batch))]
    got = OpenVinoPredictor(folder / "fp32" / "model.xml")(batch)
    assert len(got[1]) == len(expected[1]) > 0
    for ours, theirs in zip(got, expected):
        assert np.allclose(ours, theirs, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_compressed_irs_are_smaller_and_carry_metadata(exported, precision):
    _, folder, rng = exported
    assert (folder / precision / "model.bin").stat().st_size < 0.6 * (folder / "fp32" / "model.bin").stat().st_size
    predictor = OpenVinoPredictor(folder / precision / "model.xml")
    assert predictor.labels == ["cat", "dog"] and predictor.input_spec["size"] == 96
    batch, _ = preprocess(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), InputSpec(size=96))
    boxes, scores, labels, masks = predictor(batch)
    assert boxes.shape[1:] == (4,) and masks.shape[1:] == (28, 28) and len(scores) == len(labels)


def test_bf16_ir_computes_in_bfloat16_where_the_cpu_can(exported):
    import openvino as ov
    _, folder, rng = exported
    can = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    bf16 = OpenVinoPredictor(folder / "bf16" / "model.xml")
    assert bf16.precision == ("bf16" if can else "f32")
    assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT") == (ov.Type.bf16 if can else ov.Type.f32)
    for plain in ("fp32", "fp16"):  # OpenVINO's own default here would be bf16: these must not be
        predictor = OpenVinoPredictor(folder / plain / "model.xml")
        assert predictor.precision == "f32"
        assert predictor.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    batch, _ = preprocess(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), InputSpec(size=96))
    boxes, scores, labels, masks = bf16(batch)
    assert boxes.shape[1:] == (4,) and masks.shape[1:] == (28, 28) and len(scores) == len(labels) > 0


def test_bf16_falls_back_to_f32_without_bfloat16_arithmetic():
    class CoreWithoutBf16:
        def get_property(self, device, name):
            assert name == "OPTIMIZATION_CAPABILITIES"
            return ["FP32", "INT8", "BIN", "EXPORT_IMPORT"]
    assert execution_precision(CoreWithoutBf16(), "CPU", "bf16") == "f32"
    assert execution_precision(CoreWithoutBf16(), "CPU", "f32") == "f32"


def test_ir_carries_its_metadata(exported):
    _, folder, _ = exported
    predictor = OpenVinoPredictor(folder / "fp32" / "model.xml")
    assert predictor.labels == ["cat", "dog"]
    assert InputSpec.from_dict(predictor.input_spec) == InputSpec(size=96)
    assert predictor.input_spec["channels"] == "RGB" and predictor.input_spec["mean"] == [123.675, 116.28, 103.53]
    assert predictor.score_threshold == 0.0


def test_ir_on_grayscale_non_square_small_and_large_images(exported):
    _, folder, rng = exported
    predictor = OpenVinoPredictor(folder / "fp32" / "model.xml")
    for shape in ((30, 200), (500, 120), (40, 40), (1000, 1400)):
        gray = np.repeat(rng.integers(0, 255, shape + (1,), dtype=np.uint8), 3, axis=2)
        batch, scale = preprocess(gray, InputSpec(size=96))
        results = postprocess(predictor(batch), scale, shape[0], shape[1], 1, 0.0)
        assert results
        for r in results:
            x, y, w, h = r["bbox"]
            assert 0 <= x and x + w <= shape[1] + 1e-3 and 0 <= y and y + h <= shape[0] + 1e-3
            assert r["segmentation"]["size"] == list(shape)


def test_ir_with_no_detection_above_threshold(exported):
    _, folder, rng = exported
    batch, scale = preprocess(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8), InputSpec(size=96))
    assert postprocess(OpenVinoPredictor(folder / "fp32" / "model.xml")(batch), scale, 50, 50, 1, 1.01) == []


def test_predict_runs_from_the_ir_alone(exported, tmp_path):
    """`predict` in a fresh process: IR and images in, predictions and overlays out, no torch imported."""
    _, folder, rng = exported
    (tmp_path / "images").mkdir()
    from PIL import Image
    for name, shape in (("wide.png", (40, 120, 3)), ("gray.jpg", (90, 60))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / "images" / name)
    code = ("import sys, runpy; sys.argv = ['predict'] + sys.argv[1:]; "
            "runpy.run_module('pipelines.predict', run_name='__main__'); "
            "assert 'torch' not in sys.modules and 'pipelines.training' not in sys.modules, 'imported training code'")
    from tests.conftest import ROOT
    result = subprocess.run([sys.executable, "-c", code, "--ir", str(folder / "int8" / "model.xml"), "--images",
                             str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--score-threshold", "0"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [i["height"] for i in predictions["images"]] == [90, 40]  # sorted: gray.jpg, wide.png
    assert [c["name"] for c in predictions["categories"]] == ["cat", "dog"] and predictions["annotations"]
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["gray.png", "wide.png"]


def test_predict_skips_an_unreadable_image_and_predicts_the_others(exported, tmp_path):
    """A truncated JPEG and a file that is no image among a user's photos: each named with its reason, the others
    predicted and written, exit status 0."""
    from PIL import Image

    from tests.conftest import ROOT
    _, folder, rng = exported
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "broken.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photos / name)
    whole = (photos / "broken.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(whole[:len(whole) // 2])  # a copy cut short
    (photos / "notes.png").write_text("not an image")
    result = subprocess.run([sys.executable, "-m", "pipelines.predict", "--ir", str(folder / "fp32" / "model.xml"),
                             "--images", str(photos), "--out", str(tmp_path / "out"), "--score-threshold", "0"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"skipped {photos / 'broken.jpg'}: unreadable, truncated or not an image (image file is truncated" \
        in result.stdout
    assert f"skipped {photos / 'notes.png'}: unreadable, truncated or not an image (" in result.stdout
    assert "skipped 2 unreadable images" in result.stdout
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [Path(i["file_name"]).name for i in predictions["images"]] == ["a.jpg", "c.png"]
    assert {a["image_id"] for a in predictions["annotations"]} == {1, 2}
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["a.png", "c.png"]


def test_predict_with_no_readable_image_says_so_and_writes_nothing(exported, tmp_path):
    from pipelines import predict
    _, folder, _ = exported
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.jpg").write_text("not an image")
    with pytest.raises(SystemExit, match="none of the 1 images could be read"):
        predict.main(["--ir", str(folder / "fp32" / "model.xml"), "--images", str(tmp_path / "photos"),
                      "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "predictions.json").exists()

def test_int8_keeps_box_arithmetic_in_float(exported):
    import openvino as ov
    _, folder, _ = exported
    model = ov.Core().read_model(folder / "int8" / "model.xml")
    quantized_inputs = [inp.get_node() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
                        for inp in op.output(0).get_target_inputs()]
    assert any("body" in n.get_friendly_name() for n in quantized_inputs)  # the backbone is INT8
    in_heads = [n for n in quantized_inputs if "roi_heads" in n.get_friendly_name() or "rpn" in n.get_friendly_name()]
    # ShapeOf reads only a tensor's shape, never its quantized values.
    assert in_heads and {n.get_type_name() for n in in_heads} <= {"Convolution", "ConvolutionBackpropData", "MatMul",
                                                                 "ShapeOf"}


def test_an_export_killed_while_saving_leaves_the_previous_ir_whole(exported, tmp_path, monkeypatch):
    """model.xml and model.bin are put in place together: never a partial model.bin beside a model.xml."""
    import shutil

    import openvino as ov
    from pipelines.export import write

    _, folder, _ = exported
    shutil.copytree(folder / "fp32", tmp_path / "fp32")
    before = {p.name: p.read_bytes() for p in (tmp_path / "fp32").iterdir()}
    model = ov.Core().read_model(tmp_path / "fp32" / "model.xml")

    def killed(model, xml, **options):
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.with_suffix(".bin").write_bytes(bytes(1000))  # weights half written, no model.xml yet
        raise KeyboardInterrupt
    monkeypatch.setattr(ov, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        write(model, tmp_path, "fp32")
    assert {p.name: p.read_bytes() for p in (tmp_path / "fp32").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["fp32"]

@pytest.mark.slow
def test_keep_ratio_ir_takes_each_images_own_shape(engine_spec, tmp_path):
    """With keep_ratio the input's height and width follow the image: the IR of either engine, traced on one
    shape, gives PyTorch's detections on others (sizes in the graph are traced, not frozen)."""
    from pipelines import engines
    from pipelines.export import convert, write

    spec = engine_spec(resize_mode="keep_ratio", score_threshold=0.0)
    torch.manual_seed(0)
    adapter = engines.adapter(spec.engine)
    graph = adapter.inference_graph(adapter.build(spec, 2), spec).eval()
    input_spec = InputSpec(size=96, resize_mode="keep_ratio")
    rng = np.random.default_rng(0)
    example, _ = preprocess(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), input_spec)
    xml = write(convert(graph, example, ["cat", "dog"], input_spec.to_dict(), 0.0), tmp_path, "fp32")
    predictor = OpenVinoPredictor(xml)
    assert predictor.compiled.input(0).get_partial_shape().is_dynamic
    for height, width in [(48, 96), (96, 40), (30, 96)]:
        batch, _ = preprocess(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), input_spec)
        assert batch.shape[2:] != (96, 96)
        with torch.no_grad():
            expected = [t.numpy() for t in graph(torch.from_numpy(batch))]
        found = predictor(batch)
        assert len(expected[1]) > 0 and [len(o) for o in found] == [len(o) for o in expected]
        for mine, theirs in zip(found, expected):
            assert np.allclose(mine, theirs, atol=1e-3)


def test_an_ir_traced_where_the_model_detects_nothing_detects_what_pytorch_does(engine_spec, tmp_path):
    """Tracing needs no detection on its example (pipelines.export.convert): the IR of a model traced on an image
    where it finds nothing gives PyTorch's detections on the images where it finds some, and none elsewhere."""
    from dataclasses import replace

    from pipelines import checkpoints, engines
    from pipelines.export import convert, write

    spec, input_spec = engine_spec(score_threshold=0.0), InputSpec(size=96)
    adapter = engines.adapter(spec.engine)
    torch.manual_seed(0)
    model = adapter.build(spec, 2)
    rng = np.random.default_rng(0)
    batches = [preprocess(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8), input_spec)[0] for _ in range(5)]
    with torch.no_grad():
        scores = [adapter.inference_graph(model, spec)(torch.from_numpy(b))[1].numpy() for b in batches]
    # The threshold in the widest gap between scores, where some images' best score is below it and some above:
    # no score lies near it, so the IR's float rounding cannot tip one across.
    tops = sorted(s.max() for s in scores)
    between = np.unique(np.concatenate(scores))
    between = between[(between >= tops[0]) & (between <= tops[-1])]
    gap = int(np.argmax(np.diff(between)))
    threshold = float(between[gap:gap + 2].mean())
    checkpoints.save(tmp_path / "model.pt", model.state_dict(), replace(spec, score_threshold=threshold), ["a", "b"], 1)
    graph = checkpoints.load(tmp_path / "model.pt", adapter).graph
    example = batches[int(np.argmin([s.max() for s in scores]))]
    with torch.no_grad():
        expected = [[t.numpy() for t in graph(torch.from_numpy(b))] for b in batches]
        assert len(graph(torch.from_numpy(example))[1]) == 0
    predictor = OpenVinoPredictor(write(convert(graph, example, ["a", "b"], input_spec.to_dict(), threshold), tmp_path,
                                        "fp32"))
    found = [predictor(b) for b in batches]
    assert [len(f[1]) for f in found] == [len(e[1]) for e in expected]
    assert 0 in [len(e[1]) for e in expected] and max(len(e[1]) for e in expected) > 0
    for mine, theirs in zip(found, expected):
        assert all(np.allclose(m, t, atol=1e-3) for m, t in zip(mine, theirs))


def test_a_tiled_ir_gives_the_tiled_pytorch_models_results(exported):
    """Tiling happens outside the graph, in the one inference path: the IR and PyTorch run the same tiles and the
    same merge, so they agree on a large image as they do on one input."""
    from pipelines.checkpoints import torch_predictor
    from pipelines.inference import predict_image

    graph, folder, rng = exported
    pixels = rng.integers(0, 255, (150, 260, 3), dtype=np.uint8)
    spec = InputSpec(size=96, tile_size=110, tile_overlap=0.2)
    pytorch = predict_image(torch_predictor(graph), pixels, spec, 0.1)
    ir = predict_image(OpenVinoPredictor(folder / "fp32" / "model.xml"), pixels, spec, 0.1)
    untiled = predict_image(torch_predictor(graph), pixels, InputSpec(size=96), 0.1)
    assert len(ir) == len(pytorch) > len(untiled) > 0
    for mine, theirs in zip(ir, pytorch):
        assert mine["category_id"] == theirs["category_id"] and abs(mine["score"] - theirs["score"]) < 1e-3
        assert np.allclose(mine["bbox"], theirs["bbox"], atol=0.5)
