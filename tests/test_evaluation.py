import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.evaluation import STAT_NAMES, coco_metrics, evaluate
from tests.conftest import rle


def pycocotools_stats(gt_path, results, iou_type):
    """pycocotools on the same predictions; segm results without their boxes, so that COCO sizes them by mask."""
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
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


def test_segm_size_ranges_use_mask_area(tmp_path):
    """A false positive whose mask is small but whose box is large (a thin outline) counts against AP small
    of masks; sized by its box it would be ignored there, and AP small would read 100."""
    truth = np.zeros((200, 200), bool)
    truth[10:30, 10:30] = True                         # 400 px: small
    outline = np.zeros((200, 200), bool)
    outline[60:160, 60:62] = outline[60:62, 60:160] = True   # 396 px of mask in a 100 x 100 box
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.jpg", "height": 200, "width": 200}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(truth), "area": 400.0,
                         "bbox": [10, 10, 20, 20], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}]}))
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": rle(outline), "bbox": [60, 60, 100, 100]},
               {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": rle(truth), "bbox": [10, 10, 20, 20]}]
    ours = coco_metrics(path, json.loads(json.dumps(results)))
    assert ours["segm_map_small"] == 50.0  # precision 1/2 at every recall point
    assert ours["segm_map_small"] == pytest.approx(pycocotools_stats(path, results, "segm")[3] * 100, abs=1e-3)
    assert ours["bbox_map_small"] == 100.0  # boxes are sized by box: the large one is ignored among small ones
