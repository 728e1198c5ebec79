import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.evaluation import STAT_NAMES, coco_metrics, evaluate


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


def pycocotools_stats(gt_path, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_identical_to_pycocotools(case):
    gt_path, results = case
    ours = coco_metrics(gt_path, json.loads(json.dumps(results)))
    for iou_type in ("segm", "bbox"):
        reference = pycocotools_stats(gt_path, results, iou_type)
        for name, value in zip(STAT_NAMES, reference):
            expected = None if value < 0 else round(value * 100, 3)
            assert ours[f"{iou_type}_{name}"] == pytest.approx(expected, abs=1e-3), (iou_type, name)
    assert 0 < ours["segm_map"] < 100


def test_empty_predictions_score_zero(case):
    gt_path, _ = case
    metrics = coco_metrics(gt_path, [])
    assert metrics["segm_map"] == 0 and metrics["bbox_map"] == 0


def test_per_class_ap_matches_pycocotools_on_one_class(case):
    gt_path, results = case
    _, per_class = evaluate(gt_path, json.loads(json.dumps(results)))
    for cat_id, name in ((1, "a"), (2, "b")):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(gt_path))
            evaluator = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), "segm")
            evaluator.params.catIds = [cat_id]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        assert per_class[name]["segm_ap"] == pytest.approx(evaluator.stats[0] * 100, abs=1e-3)
        assert per_class[name]["segm_ap50"] == pytest.approx(evaluator.stats[1] * 100, abs=1e-3)
