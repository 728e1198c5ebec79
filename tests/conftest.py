import json
import os
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The tests check CPU behaviour, bit for bit where they compare runs (CUDA kernels such as RoIAlign's
# backward are not deterministic), so they hide any GPU from this process and every one it starts.
# The CUDA path is checked by benchmarks/cuda_training.py.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from pipelines.config import DatasetSpec, TemplateSpec  # noqa: E402


@pytest.fixture
def tiny_spec():
    """A very small template: trains and exports in seconds on a CPU."""
    def make(**overrides):
        # torchvision architecture keys among the overrides go under `model`; `model=` replaces them all.
        model = dict(backbone="resnet18", fpn_channels=32, anchor_sizes=[8, 16, 32, 64, 128], rpn_proposals=[100, 40],
                     rois_per_image=32, box_head_width=64, mask_head_channels=[32])
        model.update({k: overrides.pop(k) for k in list(overrides) if k in model})
        model = overrides.pop("model", model)
        values = dict(engine="torchvision", input_size=96, epochs=1, batch_size=2, lr=0.01, warmup_iters=2,
                      grad_clip=10.0, model=model)
        values.update(overrides)
        return TemplateSpec(**values)
    return make


# A small MMDetection Mask R-CNN: mmdet's own R50 config shrunk by overrides, as params.yaml does.
MMDET_SMALL = {"config": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco", "overrides": {
    "backbone.depth": 18, "backbone.frozen_stages": -1, "backbone.norm_eval": False,
    "neck.in_channels": [64, 128, 256, 512], "neck.out_channels": 32,
    "rpn_head.in_channels": 32, "rpn_head.feat_channels": 32, "rpn_head.anchor_generator.scales": [2],
    "roi_head.bbox_roi_extractor.out_channels": 32, "roi_head.bbox_head.in_channels": 32,
    "roi_head.bbox_head.fc_out_channels": 64, "roi_head.mask_roi_extractor.out_channels": 32,
    "roi_head.mask_head.in_channels": 32, "roi_head.mask_head.conv_out_channels": 32, "roi_head.mask_head.num_convs": 1,
    "train_cfg.rpn_proposal.nms_pre": 100, "train_cfg.rpn_proposal.max_per_img": 40, "train_cfg.rcnn.sampler.num": 32,
    "test_cfg.rpn.nms_pre": 100, "test_cfg.rpn.max_per_img": 40}}


@pytest.fixture
def tiny_project(tiny_spec):
    """Makes a working folder for stage commands: a demo WGISD written raw and prepared, and params.yaml running
    tiny alone (`epochs` of them) on wgisd_5 with seed 0; `edit(params)` changes params.yaml further."""
    def make(folder: Path, epochs: int, images: int = 16, edit=lambda params: None) -> Path:
        import dataclasses

        import yaml

        from pipelines.datasets.demo import make_wgisd
        from pipelines.datasets.prepare import prepare
        make_wgisd(folder / "raw", images, 4, seed=0)
        prepare(DatasetSpec("wgisd", "raw", {"train": "train", "test": "test"}, val_ratio=0.25), folder / "raw",
                folder / "prepared")
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["templates"] = {"tiny": dataclasses.asdict(tiny_spec(epochs=epochs))}
        params["run"].update(templates={"torchvision": ["tiny"], "mmdet": []}, datasets=["wgisd_5"], seeds=[0])
        edit(params)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        return folder
    return make


@pytest.fixture
def mmdet_spec():
    """The MMDetection engine's counterpart of tiny_spec."""
    def make(**overrides):
        model = {**MMDET_SMALL, **overrides.pop("model", {})}
        values = dict(engine="mmdet", input_size=96, epochs=1, batch_size=2, lr=0.01, warmup_iters=2, grad_clip=10.0,
                      model=model)
        values.update(overrides)
        return TemplateSpec(**values)
    return make


@pytest.fixture(params=["torchvision", "mmdet"])
def engine_spec(request, tiny_spec, mmdet_spec):
    """A small template of each engine in turn."""
    return {"torchvision": tiny_spec, "mmdet": mmdet_spec}[request.param]


def export_test_irs(graph, folder: Path, float_scopes, precisions=None):
    """Converts `graph` (96 px input) on a random image, writes the IRs of `precisions` (default: every one of
    pipelines.precisions) under `folder` (INT8 calibrated on 3 random images) and returns the random generator,
    ready for the tests' own images."""
    import numpy as np

    from pipelines.export import convert, write
    from pipelines.inference import InputSpec, preprocess
    from pipelines.precisions import PRECISIONS

    spec = InputSpec(size=96)
    rng = np.random.default_rng(0)
    example, _ = preprocess(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8), spec)
    model = convert(graph, example, ["cat", "dog"], spec.to_dict(), 0.0)
    calibration = [preprocess(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), spec)[0] for _ in range(3)]
    for precision in precisions or PRECISIONS:  # fp32 first: the others derive from it
        write(model, folder, precision, calibration, float_scopes)
    return rng


def prepared_wgisd(root: Path, train: int, test: int) -> Path:
    """Demo WGISD with `train` and `test` images written under `root` and prepared (a quarter of train to val);
    returns the prepared folder."""
    from pipelines.datasets import demo
    from pipelines.datasets.prepare import prepare
    demo.make_wgisd(root / "raw", train, test, seed=0)
    prepare(DatasetSpec("wgisd", "raw", {"train": "train", "test": "test"}, val_ratio=0.25), root / "raw",
            root / "prepared")
    return root / "prepared"


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


@pytest.fixture
def case(tmp_path):
    """20 images with 1-3 squares of 2 classes, a crowd region, and jittered, partly wrong predictions."""
    rng = np.random.default_rng(0)
    images, anns, results = [], [], []
    for image_id in range(1, 21):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": 64, "width": 64})
        for k in range(int(rng.integers(1, 4))):
            x, y, s = (int(v) for v in rng.integers(0, 40, size=3) // [1, 1, 2] + [0, 0, 8])
            mask = np.zeros((64, 64), bool)
            mask[y:y + s, x:x + s] = True
            crowd = int(image_id == 3 and k == 0)
            label = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": label, "segmentation": rle(mask),
                         "area": float(mask.sum()), "bbox": [x, y, s, s], "iscrowd": crowd})
            dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
            pred = np.zeros((64, 64), bool)
            pred[max(0, y + dy):y + dy + s, max(0, x + dx):x + dx + s] = True
            wrong = rng.random() < 0.2
            results.append({"image_id": image_id, "category_id": 3 - label if wrong else label,
                            "score": float(rng.random()), "segmentation": rle(pred),
                            "bbox": [float(max(0, x + dx)), float(max(0, y + dy)), float(s), float(s)]})
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return path, results
