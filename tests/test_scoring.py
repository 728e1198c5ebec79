import json

import numpy as np

from pipelines.inference import InputSpec
from pipelines.scoring import score
from pipelines.splits import TEST, VAL, split_file
from pipelines.tide import worst_images
from pipelines.visualize import examples
from tests.conftest import prepared_wgisd


def detects_nothing(batch):
    """A predictor (pipelines.inference's contract) that finds no object on any image."""
    return [np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
            np.zeros((0, 28, 28), np.float32)]


def test_a_model_that_detects_nothing_scores_zero_everywhere(tmp_path):
    """A weak template is a result: its 0 is measured, intervals, errors and pictures included, as evaluate and
    validate do."""
    data = prepared_wgisd(tmp_path, 8, 3)
    scored = score(detects_nothing, InputSpec(size=64), 0.05, split_file(data, TEST), split_file(data, VAL),
                   {"resamples": 50, "seed": 0}, {"warmup": 0, "repeats": 1})
    metrics = scored.metrics
    assert scored.results == []
    assert metrics["segm_map"] == metrics["bbox_map"] == metrics["segm_map50"] == 0
    assert metrics["segm_map_low"] == metrics["segm_map_high"] == metrics["bbox_map_low"] == 0
    assert set(scored.replicates["segm_map"]) == {0.0}
    assert metrics["deploy_threshold"] is None
    assert metrics["deploy_precision"] == metrics["deploy_recall"] == metrics["deploy_f1"] == 0
    assert all(row == {"segm_ap": 0.0, "segm_ap50": 0.0, "bbox_ap": 0.0, "bbox_ap50": 0.0}
               for row in scored.per_class.values())
    split = json.loads(split_file(data, TEST).read_text())
    objects = sum(not a["iscrowd"] for a in split["annotations"])
    for iou_type in ("segm", "bbox"):
        found = scored.errors[iou_type]
        assert found["ap50"] == 0 and found["counts"]["all"]["missed"] == objects
        assert found["counts"]["all"]["true_positives"] == 0
    # What the stages write: plain JSON numbers (no NaN), and both pictures.
    json.dumps([scored.metrics, scored.errors, scored.replicates, scored.per_class], allow_nan=False)
    worst = worst_images(scored.errors["deploy"]["areas"], 2)
    assert len(worst) == 2  # every image with an object missed it
    assert examples(split, data, scored.results, 2, 0.3).size[1] > 18
    assert examples(split, data, scored.results, 2, 0.3, image_ids=worst).size[1] > 18
