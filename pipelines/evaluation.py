"""COCO bbox and segm metrics of a prediction list against a prepared split, as flat percent values.

faster-coco-eval computes the same statistics as pycocotools (tests/test_evaluation.py checks this)
in a fraction of the time.
"""

import contextlib
import io
from pathlib import Path

from faster_coco_eval import COCO, COCOeval_faster

# The 12 standard COCO statistics, in pycocotools' order.
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def coco_metrics(split_json: Path, results: list) -> dict:
    """`{segm_map: ..., bbox_map50: ..., ...}` in percent; None where COCO reports -1 (nothing to measure).

    An empty `results` list scores 0 rather than raising like `loadRes([])` does.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(split_json))
    metrics = {}
    for iou_type in ("segm", "bbox"):
        if not results:
            stats = [0.0] * len(STAT_NAMES)
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes(results), iou_type,
                                            print_function=lambda *_: None)
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
            stats = evaluator.stats[: len(STAT_NAMES)]
        for name, value in zip(STAT_NAMES, stats):
            metrics[f"{iou_type}_{name}"] = None if value < 0 else round(float(value) * 100, 3)
    return metrics
