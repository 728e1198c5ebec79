"""The error decomposition: TIDE's dAPs, equal to the reference implementation's (tidecv 1.0.1) on the same
predictions, worked by hand on a small case, and with intervals that pair."""

import json

import numpy as np
import pytest

from pipelines import tide
from pipelines.config import DatasetSpec
from pipelines.datasets import demo
from pipelines.datasets.prepare import prepare
from pipelines.splits import TEST, split_file
from tests.conftest import rle  # noqa: F401

TIDE_NAMES = {"classification": "Cls", "localisation": "Loc", "both": "Both", "duplicate": "Dupe",
              "background": "Bkg", "missed": "Miss", "false_positives": "FalsePos", "false_negatives": "FalseNeg"}


def tidecv_errors(split, results, tmp_path, mode):
    """tidecv's own numbers: AP50 and every dAP, main and special."""
    from tidecv import TIDE, datasets
    path = tmp_path / f"results_{mode}.json"
    path.write_text(json.dumps(results))
    reference = TIDE(pos_threshold=0.5, background_threshold=0.1, mode=mode)
    run = reference.evaluate(datasets.COCO(str(split)), datasets.COCOResult(str(path)), mode=mode, name="run")
    found = {**reference.get_main_errors()["run"], **reference.get_special_errors()["run"]}
    return run.ap, {ours: found[theirs] for ours, theirs in TIDE_NAMES.items()}


def perturbed(split, seed: int) -> list:
    """Predictions made from a split's own objects, every error type among them: most objects found with a jittered
    mask, some with another class, shifted off, found twice, missed; and detections on the background."""
    rng = np.random.default_rng(seed)
    coco = json.loads(split.read_text())
    sizes = {i["id"]: (i["height"], i["width"]) for i in coco["images"]}
    labels = [c["id"] for c in coco["categories"]]
    results = []
    for ann in coco["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:  # missed
            continue
        import pycocotools.mask as mask_utils
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        roll = rng.integers(-2, 3, size=2) if rng.random() < 0.8 else rng.integers(-12, 13, size=2)  # localisation
        moved = np.roll(mask, tuple(int(v) for v in roll), axis=(0, 1))
        label = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(labels))    # classification
        for copy in range(2 if rng.random() < 0.1 else 1):                                 # duplicate
            results.append({"image_id": ann["image_id"], "category_id": label, "score": float(rng.random()),
                            "segmentation": rle(moved), "bbox": box(moved)})
    for image_id, (height, width) in sizes.items():                                         # background
        if rng.random() < 0.5:
            mask = np.zeros((height, width), bool)
            y, x = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
            mask[y:y + 8, x:x + 8] = True
            results.append({"image_id": image_id, "category_id": int(rng.choice(labels)),
                            "score": float(rng.random()), "segmentation": rle(mask), "bbox": box(mask)})
    return results


def box(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@pytest.fixture
def demo_wgisd(tmp_path):
    """The demo's WGISD in 5 classes, prepared: its test split and predictions with every error type."""
    demo.make_wgisd(tmp_path / "raw", 8, 16, seed=0)
    spec = DatasetSpec("wgisd", "raw", {"train": "train", "test": "test"}, {"by_variety": True}, val_ratio=0.25)
    prepare(spec, tmp_path / "raw", tmp_path / "prepared")
    split = split_file(tmp_path / "prepared", TEST)
    return split, perturbed(split, seed=1)


@pytest.mark.parametrize("which", ["case", "demo"])
@pytest.mark.parametrize("iou_type, mode", [("segm", "mask"), ("bbox", "bbox")])
def test_daps_equal_tidecvs(which, iou_type, mode, case, demo_wgisd, tmp_path):
    split, results = case if which == "case" else demo_wgisd
    ap, expected = tidecv_errors(split, results, tmp_path, mode)
    found = tide.decompose(tide.judge(split, results, iou_type), resamples=20, seed=0)
    assert found["ap50"] == pytest.approx(ap, abs=0.05)
    for name, value in expected.items():
        assert found["dap"][name]["dap"] == pytest.approx(value, abs=0.05), name
    assert sum(v["dap"] for k, v in found["dap"].items() if k in tide.TYPES) > 1  # errors there are


def test_each_error_type_by_hand(tmp_path):
    """One image, two classes; objects A (class 1), B (class 1), C (class 2), each 10 x 10. Detections, best first:
    A exactly (true positive), A again (duplicate), B as class 2 (classification), C shifted by 6 px (IoU 0.25:
    localisation), a patch on nothing (background). B's classification error is fixable, C's localisation too."""
    canvas = (64, 64)

    def square(y, x, size=10):
        mask = np.zeros(canvas, bool)
        mask[y:y + size, x:x + size] = True
        return mask
    objects = [(square(2, 2), 1), (square(2, 30), 1), (square(30, 2), 2)]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "height": 64, "width": 64}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "segmentation": rle(m), "area": 100.0,
                         "bbox": box(m), "iscrowd": 0} for i, (m, c) in enumerate(objects)]}))
    detections = [(square(2, 2), 1, 0.9), (square(2, 2), 1, 0.8), (square(2, 30), 2, 0.7), (square(36, 2), 2, 0.6),
                  (square(50, 50), 1, 0.5)]
    results = [{"image_id": 1, "category_id": c, "score": s, "segmentation": rle(m), "bbox": box(m)}
               for m, c, s in detections]
    judged = tide.judge(split, results, "segm")
    assert [tide.TYPES[e] if e >= 0 else "tp" for e in judged.error] == [
        "tp", "duplicate", "classification", "localisation", "background"]
    assert list(judged.fixed_label) == [-1, -1, 0, 1, -1] and not judged.gt_missed.any()
    found = tide.decompose(judged, resamples=10, seed=0)["dap"]
    # AP50: class a: 1 TP then a duplicate FP of 2 objects -> recall 0.5 at precision 1: 50.5 (101 points);
    # class b: 1 object, detections 0.7 (FP), 0.6 (FP) -> 0. mAP 25.25.
    assert tide.decompose(judged, resamples=10, seed=0)["ap50"] == pytest.approx(25.2475, abs=1e-3)
    # Fixing the classification error makes B class a's TP at 0.7: class a's curve is then precision 1 up to recall
    # 0.5 and 2/3 beyond it (51 and 50 of the 101 points), class b's still 0.
    assert found["classification"]["dap"] == pytest.approx(100 * (51 + 50 * 2 / 3) / 101 / 2 - 25.2475, abs=1e-3)
    # Fixing the localisation error makes C class b's TP at 0.6, after the 0.7 FP: precision 1/2 at recall 1.
    assert found["localisation"]["dap"] == pytest.approx(100 * 0.5 / 2, abs=1e-3)
    assert found["duplicate"]["dap"] == 0.0  # a duplicate below the only TP changes nothing of class a's curve


def test_the_same_resamples_pair_two_models(case):
    split, results = case
    first = tide.decompose(tide.judge(split, results, "segm"), resamples=50, seed=3)
    again = tide.decompose(tide.judge(split, list(results), "segm"), resamples=50, seed=3)
    assert first["replicates"] == again["replicates"]  # the same draws: identical models differ by nothing
    for name, value in first["dap"].items():
        assert value["low"] <= value["high"]
