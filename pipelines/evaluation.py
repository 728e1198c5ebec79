"""COCO bbox and segm metrics of a prediction list against a prepared split, in percent.

faster-coco-eval computes the same statistics as pycocotools (tests/test_evaluation.py and
benchmarks/evaluation.py check this) in a fraction of the time.
"""

import contextlib
import io
from pathlib import Path

from faster_coco_eval import COCO, COCOeval_faster

# The 12 standard COCO statistics, in pycocotools' order.
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")
IOU_TYPES = ("segm", "bbox")


def _percent(value: float):
    return None if value < 0 else float(value) * 100


def evaluate(split_json: Path, results: list) -> tuple[dict, dict]:
    """Returns (metrics, per_class).

    metrics: `{segm_map: ..., bbox_map50: ..., ...}`; None where COCO reports -1 (nothing to measure).
    per_class: `{class name: {segm_ap, segm_ap50, bbox_ap, bbox_ap50}}`, AP at all areas, 100 detections.
    An empty `results` list scores 0 rather than raising like `loadRes([])` does.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(split_json))
    categories = ground_truth.loadCats(ground_truth.getCatIds())
    metrics, per_class = {}, {c["name"]: {} for c in categories}
    for iou_type in IOU_TYPES:
        if not results:
            metrics.update({f"{iou_type}_{name}": 0.0 for name in STAT_NAMES})
            for row in per_class.values():
                row.update({f"{iou_type}_ap": 0.0, f"{iou_type}_ap50": 0.0})
            continue
        # COCO's loader takes a result's area from its box when it has one, so segm results keep only
        # their masks: AP and AR small/medium/large of masks then use mask areas (as detectron2 does).
        scored = [{k: v for k, v in r.items() if k != "bbox"} for r in results] if iou_type == "segm" else results
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes(scored), iou_type,
                                        print_function=lambda *_: None)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)]):
            metrics[f"{iou_type}_{name}"] = _percent(value)
        # precision: [IoU thresholds, recall points, classes, area ranges, max detections]
        precision = evaluator.eval["precision"]
        for k, category in enumerate(categories):
            for suffix, curve in (("ap", precision[:, :, k, 0, -1]), ("ap50", precision[0, :, k, 0, -1])):
                valid = curve[curve > -1]
                per_class[category["name"]][f"{iou_type}_{suffix}"] = _percent(valid.mean()) if valid.size else None
    return metrics, per_class


def coco_metrics(split_json: Path, results: list) -> dict:
    """The overall metrics of `evaluate` alone."""
    return evaluate(split_json, results)[0]
