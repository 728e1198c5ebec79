"""The errors behind a mAP: TIDE's decomposition (Bolya, Foley, Hays, Hoffman, ECCV 2020), with bootstrap intervals.

Every detection that is not a true positive at IoU 0.5 is one error, judged against all ground-truth objects of
its image in this order (`classify`): localisation (right class, 0.1 <= IoU <= 0.5), classification (IoU >= 0.5
with an object of another class), duplicate (right class, IoU >= 0.5, the object already matched by a higher
score), background (IoU <= 0.1 with every object), both (everything else: wrong class and 0.1 < IoU < 0.5); an
object no detection matched, and that no localisation or classification error could be fixed into, is missed.
Each type's dAP is the AP at IoU 0.5 once an oracle fixes that type alone, minus the AP: a classification or
localisation error becomes its object's true positive (the highest-scoring such error per object; the others
are removed), duplicates, background and both errors are removed, a missed object is dropped from the
positives. Two more: fixing every false positive (true positives ranked first) and every false negative.
The matching and AP follow tidecv 1.0.1, the reference implementation (tests/test_tide.py checks the dAPs
against it): at most 100 detections per image over all classes, a crowd region ignores an unmatched detection
of its class covering it by more than half, a class with detections but no object counts with AP 0.

The AP of every fix is computed for the same bootstrap resamples of the test images as pipelines.confidence's,
so each dAP has a 95% interval and two models' dAPs pair draw by draw.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils

from pipelines.confidence import first_reaching, interval, resample_weights

POSITIVE, BACKGROUND = 0.5, 0.1
TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
SPECIAL = ("false_positives", "false_negatives")
TIDE_RECALL = np.arange(101) / 100  # tidecv's recall points, i / 100 (not pycocotools' linspace)
SIZES = {"small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, float("inf"))}  # COCO's areas
MAX_DETECTIONS = 100
CHUNK = 100


@dataclass
class Judged:
    """What TIDE's matching made of one split's detections and objects; arrays over detections (d) and objects (g)."""
    image: np.ndarray        # d: index of the detection's image
    score: np.ndarray        # d
    label: np.ndarray        # d: class index
    tp: np.ndarray           # d: matched an object at IoU >= 0.5
    ignored: np.ndarray      # d: inside a crowd region of its class, not scored
    error: np.ndarray        # d: index in TYPES, -1 for a true positive
    fixed_label: np.ndarray  # d: the class it is a true positive of once its error is fixed; -1: removed
    area: np.ndarray         # d: mask (or box) area in pixels
    gt_image: np.ndarray     # g
    gt_label: np.ndarray     # g
    gt_matched: np.ndarray   # g
    gt_missed: np.ndarray    # g: a missed error (unmatched and no error fixes into it)
    gt_area: np.ndarray      # g
    classes: int
    images: int


def _geometry(entry: dict, iou_type: str):
    return entry["segmentation"] if iou_type == "segm" else entry["bbox"]


def _area(entry: dict, iou_type: str) -> float:
    return float(mask_utils.area(entry["segmentation"])) if iou_type == "segm" else entry["bbox"][2] * entry["bbox"][3]


def classify(iou: np.ndarray, same: np.ndarray, used: np.ndarray) -> int:
    """The TIDE error of one unmatched detection from its IoU with each object, which of them share its class and
    which are matched (the order of the tests is TIDE's)."""
    if not len(iou):
        return TYPES.index("background")
    same_class = iou[same].max(initial=0.0)
    if BACKGROUND <= same_class <= POSITIVE:
        return TYPES.index("localisation")
    if iou[~same].max(initial=0.0) >= POSITIVE:
        return TYPES.index("classification")
    if iou[same & used].max(initial=0.0) >= POSITIVE:
        return TYPES.index("duplicate")
    if iou.max() <= BACKGROUND:
        return TYPES.index("background")
    return TYPES.index("both")


def _image(detections: list, objects: list, crowds: list, iou_type: str, classes: dict):
    """One image: detections (sorted, top 100) matched greedily to its objects, then each other one classified.
    Returns per detection (tp, ignored, error, target object or -1) and per object whether it was matched."""
    n, m = len(detections), len(objects)
    iou = np.asarray(mask_utils.iou([_geometry(d, iou_type) for d in detections],
                                    [_geometry(o, iou_type) for o in objects], [0] * m)).reshape(n, m) \
        if n and m else np.zeros((n, m))
    det_class = np.array([classes[d["category_id"]] for d in detections], int)
    obj_class = np.array([classes[o["category_id"]] for o in objects], int)
    same = det_class[:, None] == obj_class[None, :]
    free, tp, used = iou * same, np.zeros(n, bool), np.zeros(m, bool)
    for i in range(n if m else 0):
        j = int(np.argmax(free[i]))
        if free[i, j] >= POSITIVE:
            tp[i], used[j] = True, True
            free[:, j] = 0
    ignored = np.zeros(n, bool)
    for crowd in crowds:
        cover = np.asarray(mask_utils.iou([_geometry(d, iou_type) for d in detections], [_geometry(crowd, iou_type)],
                                          [1])).reshape(n) if n else np.zeros(0)
        ignored |= ~tp & (cover > POSITIVE) & (det_class == classes[crowd["category_id"]])
    error, target = np.full(n, -1), np.full(n, -1)
    for i in np.flatnonzero(~tp):
        error[i] = classify(iou[i], same[i], used)
        if error[i] in (TYPES.index("localisation"), TYPES.index("classification")):
            candidates = iou[i] * (same[i] if error[i] == TYPES.index("localisation") else ~same[i])
            target[i] = int(np.argmax(candidates))
    return tp, ignored, error, target, used


def _split(split_json: Path, results: list):
    """Per image of a split: its objects, crowd regions and detections (best first, at most 100)."""
    coco = json.loads(Path(split_json).read_text())
    classes = {c["id"]: k for k, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    annotations, detections = {}, {}
    for a in coco["annotations"]:
        annotations.setdefault(a["image_id"], []).append(a)
    for r in results:
        detections.setdefault(r["image_id"], []).append(r)
    per_image = []
    for image in coco["images"]:
        found = annotations.get(image["id"], [])
        ranked = sorted(detections.get(image["id"], []), key=lambda r: -r["score"])[:MAX_DETECTIONS]
        per_image.append(([a for a in found if not a["iscrowd"]], [a for a in found if a["iscrowd"]], ranked))
    return per_image, classes


def judge(split_json: Path, results: list, iou_type: str) -> Judged:
    """TIDE's matching and error types of COCO `results` on a prepared split, for masks (segm) or boxes (bbox)."""
    per_image, classes = _split(split_json, results)
    dets = {f: [] for f in ("image", "score", "label", "tp", "ignored", "error", "area")}
    objs = {f: [] for f in ("image", "label", "matched", "area")}
    best = {}  # object -> (score, detection): the error an oracle fixes into it
    for k, (objects, crowds, detections) in enumerate(per_image):
        tp, ignored, error, target, used = _image(detections, objects, crowds, iou_type, classes)
        first_object, first_detection = len(objs["image"]), len(dets["image"])
        for i, d in enumerate(detections):
            if target[i] >= 0 and not used[target[i]]:
                key = first_object + int(target[i])
                if key not in best or best[key][0] < d["score"]:  # an earlier detection wins a tie
                    best[key] = (d["score"], first_detection + i)
        dets["image"] += [k] * len(detections)
        dets["score"] += [d["score"] for d in detections]
        dets["label"] += [classes[d["category_id"]] for d in detections]
        dets["area"] += [_area(d, iou_type) for d in detections]
        dets["tp"], dets["ignored"], dets["error"] = dets["tp"] + list(tp), dets["ignored"] + list(ignored), \
            dets["error"] + list(error)
        objs["image"] += [k] * len(objects)
        objs["label"] += [classes[o["category_id"]] for o in objects]
        objs["area"] += [float(o["area"]) for o in objects]
        objs["matched"] += list(used)
    fixed = np.full(len(dets["image"]), -1)
    for key, (_, detection) in best.items():
        fixed[detection] = objs["label"][key]
    matched = np.asarray(objs["matched"], bool)
    missed = ~matched & ~np.isin(np.arange(len(matched)), list(best))
    # Typed: with no detection at all (a model that finds nothing) the lists are empty and would become floats.
    return Judged(np.asarray(dets["image"], int), np.asarray(dets["score"], float), np.asarray(dets["label"], int),
                  np.asarray(dets["tp"], bool),
                  np.asarray(dets["ignored"], bool), np.asarray(dets["error"], int), fixed,
                  np.asarray(dets["area"], float), np.asarray(objs["image"], int), np.asarray(objs["label"], int),
                  matched, missed, np.asarray(objs["area"], float), classes=len(classes), images=len(per_image))


@dataclass(frozen=True)
class Points:
    """Detections as an AP sees them (image, score, class, true positive) and the objects it must find."""
    image: np.ndarray
    score: np.ndarray
    label: np.ndarray
    tp: np.ndarray
    gt_image: np.ndarray
    gt_label: np.ndarray


def _class_ap(score, tp, image, objects, weights) -> np.ndarray:
    """`[B]` AP in percent of one class's points under image `weights` (`[B, images]`), TIDE's way: precision made
    monotone, read at 101 recall points; 0 where the class has no object."""
    if not len(score):
        return np.zeros(len(weights))
    order = np.argsort(-score, kind="stable")
    drawn = weights[:, image[order]]                                    # [B, N]
    tps, fps = np.cumsum(tp[order] * drawn, axis=1), np.cumsum(~tp[order] * drawn, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    index = first_reaching(tps[:, None, :], np.where(objects > 0, objects, 1), TIDE_RECALL)[:, 0, :]
    taken = np.take_along_axis(precision, np.minimum(index, len(score) - 1), axis=1)
    return np.where(objects > 0, 100 * np.where(index < len(score), taken, 0.0).mean(axis=1), 0.0)


def average_precision(points: Points, classes: int, weights: np.ndarray) -> np.ndarray:
    """`[B]` mAP at IoU 0.5 in percent under image `weights`: the mean over classes with a point or an object; 0 where
    no class has either (as tidecv's compute_mAP counts it; its get_mAP, which its dAPs use, divides by zero there),
    e.g. once an oracle drops the missed objects of a model that detects nothing."""
    total, counted = np.zeros(len(weights)), np.zeros(len(weights))
    for c in range(classes):
        mine, theirs = points.label == c, points.gt_label == c
        objects = weights[:, points.gt_image[theirs]].sum(axis=1)
        present = (objects > 0) | (weights[:, points.image[mine]].sum(axis=1) > 0)
        ap = _class_ap(points.score[mine], points.tp[mine], points.image[mine], objects, weights)
        total, counted = total + np.where(present, ap, 0), counted + present
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / counted, 0.0)


def fixed(judged: Judged, fix: str) -> Points:
    """The points once an oracle fixes `fix` (an error type of TYPES or SPECIAL), or none fixed (`fix` None)."""
    keep, label, tp, score = ~judged.ignored, judged.label.copy(), judged.tp.copy(), judged.score.copy()
    objects = np.ones(len(judged.gt_label), bool)
    if fix in ("classification", "localisation"):
        mine = judged.error == TYPES.index(fix)
        keep = np.where(mine, judged.fixed_label >= 0, keep)
        label, tp = np.where(mine & (judged.fixed_label >= 0), judged.fixed_label, label), tp | (mine & keep)
    elif fix in ("both", "duplicate", "background"):
        keep &= judged.error != TYPES.index(fix)
    elif fix == "missed":
        objects = ~judged.gt_missed
    elif fix == "false_positives":
        score = tp.astype(float)
    elif fix == "false_negatives":
        objects = judged.gt_matched
    return Points(judged.image[keep], score[keep], label[keep], tp[keep], judged.gt_image[objects],
                  judged.gt_label[objects])


def _chunked(points: Points, classes: int, weights: np.ndarray) -> np.ndarray:
    return np.concatenate([average_precision(points, classes, weights[s:s + CHUNK])
                           for s in range(0, len(weights), CHUNK)])


def decompose(judged: Judged, resamples: int, seed: int) -> dict:
    """AP50, each error type's dAP (main ones at least 0, as TIDE clamps them) with its 95% interval over the test
    images' bootstrap resamples (pipelines.confidence's), their replicates, and the counts behind them."""
    weights = np.vstack([np.ones((1, judged.images)), resample_weights(judged.images, resamples, seed)])
    base = _chunked(fixed(judged, None), judged.classes, weights)
    found = {"ap50": round(float(base[0]), 4), "dap": {}, "replicates": {}}
    for fix in TYPES + SPECIAL:
        gain = _chunked(fixed(judged, fix), judged.classes, weights) - base
        gain = np.maximum(gain, 0) if fix in TYPES else gain
        low, high = interval(gain[1:])
        found["dap"][fix] = {"dap": round(float(gain[0]), 4), "low": round(low, 4), "high": round(high, 4)}
        found["replicates"][fix] = [round(float(v), 4) for v in gain[1:]]
    found["counts"] = counts(judged)
    return found


def _size(area: np.ndarray) -> np.ndarray:
    return np.select([area < SIZES["small"][1], area < SIZES["medium"][1]], ["small", "medium"], "large")


def counts(judged: Judged) -> dict:
    """How many detections made each error (crowd-covered ones are not errors) and how many objects were missed,
    overall and per COCO size range (a detection's by its own area, a missed object's by its)."""
    scored = (judged.error >= 0) & ~judged.ignored
    sizes, gt_sizes = _size(judged.area), _size(judged.gt_area)
    found = {}
    for size in ("all",) + tuple(SIZES):
        near = scored & ((sizes == size) | (size == "all"))
        found[size] = {t: int(((judged.error == k) & near).sum()) for k, t in enumerate(TYPES) if t != "missed"}
        found[size]["missed"] = int((judged.gt_missed & ((gt_sizes == size) | (size == "all"))).sum())
        found[size]["true_positives"] = int((judged.tp & ((sizes == size) | (size == "all"))).sum())
    return found


def at_threshold(split_json: Path, results: list, threshold: float | None) -> dict:
    """What a deployment sees with the detections scoring at least `threshold` (the F1-best one): each object
    matched to the detection of any class with the highest mask IoU >= 0.5, greedily by score. Returns the
    confusion matrix (rows the true class, columns the predicted one, the last of each the background: missed
    objects and false detections; crowd-covered detections are left out) and, per image, the missed and the
    false mask area in pixels."""
    per_image, classes = _split(split_json, [r for r in results if threshold is not None and r["score"] >= threshold])
    k = len(classes)
    matrix = np.zeros((k + 1, k + 1), int)
    ids = [image["id"] for image in json.loads(Path(split_json).read_text())["images"]]
    areas = {}
    for image_id, (objects, crowds, detections) in zip(ids, per_image):
        n, m = len(detections), len(objects)
        iou = np.asarray(mask_utils.iou([d["segmentation"] for d in detections], [o["segmentation"] for o in objects],
                                        [0] * m)).reshape(n, m) if n and m else np.zeros((n, m))
        covered = np.zeros(n, bool)
        for crowd in crowds:
            covered |= np.asarray(mask_utils.iou([d["segmentation"] for d in detections], [crowd["segmentation"]],
                                                 [1])).reshape(n) > POSITIVE if n else covered
        matched, missed, false = np.full(m, False), 0.0, 0.0
        for i, d in enumerate(detections):
            free = np.where(matched, -1.0, iou[i]) if m else np.zeros(0)
            j = int(np.argmax(free)) if m else -1
            truth = classes[objects[j]["category_id"]] if m and free[j] >= POSITIVE else k
            if truth < k:
                matched[j] = True
            elif covered[i]:
                continue
            matrix[truth, classes[d["category_id"]]] += 1
            false += _area(d, "segm") if truth != classes[d["category_id"]] else 0.0
        for j in np.flatnonzero(~matched):
            matrix[classes[objects[j]["category_id"]], k] += 1
            missed += float(objects[j]["area"])
        areas[image_id] = {"missed_area": missed, "false_area": false}
    return {"confusion": matrix.tolist(), "areas": areas}


def worst_images(areas: dict, count: int) -> list:
    """The ids of the `count` images with the most missed plus false mask area (ties: the first)."""
    ranked = sorted(areas, key=lambda i: -(areas[i]["missed_area"] + areas[i]["false_area"]))
    return [i for i in ranked if areas[i]["missed_area"] + areas[i]["false_area"] > 0][:count]


def analyse(split_json: Path, results: list, threshold: float | None, resamples: int, seed: int) -> dict:
    """Everything `<runtime>_errors.json` holds: per IoU type the decomposition (dAPs with intervals and
    replicates, counts per size), and at the deploy threshold the confusion matrix and per-image error areas."""
    found = {t: decompose(judge(split_json, results, t), resamples, seed) for t in ("segm", "bbox")}
    return {**found, "deploy": at_threshold(split_json, results, threshold)}
