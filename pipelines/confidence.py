"""How sure a benchmark number is: bootstrap intervals of COCO mAP over test images, paired differences, and
the score threshold a deployment would use.

COCO's matching of each image's detections (pycocotools' `evaluateImg`: per class, every detection matched or
not at each IoU threshold, or ignored) is computed once. A bootstrap resample draws the test images with
replacement and only re-weights them (an image drawn k times counts k times); precision at COCO's 101 recall
points is then accumulated as pycocotools' `accumulate` does, so with every weight 1 it is the ordinary mAP
(tests/test_confidence.py checks it against `pipelines.evaluation`), and hundreds of resamples cost a fraction
of one evaluation.

The resamples depend on the number of test images, the number of resamples and the seed only: every model
evaluated on a split sees the same draws, so replicate b of two templates (or two IRs) is scored on the same
images, which is what a paired comparison needs.
"""

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# pycocotools' recall points and IoU thresholds (COCOeval's Params), to the bit.
RECALL_POINTS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
LEVEL = 0.95          # the coverage of every interval
CHUNK = 50            # resamples accumulated at once (memory: CHUNK x 10 x detections of a class)


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections over a split, sorted by score as COCO accumulates them."""
    image: np.ndarray     # [N] index of each detection's image
    score: np.ndarray     # [N]
    tp: np.ndarray        # [10, N] matched at each IoU threshold (and not ignored)
    fp: np.ndarray        # [10, N] unmatched (and not ignored)
    ground_truth: np.ndarray  # [images] objects of this class per image that count (not crowd)


@dataclass(frozen=True)
class Matches:
    """COCO's matching of one prediction list against a split for one IoU type (area all, 100 detections)."""
    image_count: int
    classes: list         # ClassMatches per category, in category id order


# COCO's object sizes (COCOeval's Params.areaRng): an object counts in a size when its area lies in the range.
AREAS = {"all": (0, 1e10), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e10)}
SIZES = ("small", "medium", "large")


def match(split_json: Path, results: list, iou_type: str) -> Matches:
    """Runs pycocotools' per-image matching of `results` (COCO result dicts) on `split_json`."""
    return match_sizes(split_json, results, iou_type, ("all",))["all"]


def match_sizes(split_json: Path, results: list, iou_type: str, areas=tuple(AREAS)) -> dict:
    """`{area: Matches}` for each of COCO's `areas` (AREAS' keys), from one run of pycocotools' matching: in a size
    range, objects outside it are ignored and so are unmatched detections outside it, as COCO's AP small is."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(split_json))
    image_ids, category_ids = sorted(ground_truth.getImgIds()), sorted(ground_truth.getCatIds())
    n, ranges = len(image_ids), [list(AREAS[a]) for a in areas]
    evaluated = [None] * (n * len(category_ids) * len(ranges))
    if results:
        # As pipelines.evaluation does: segm results without their box, so areas come from the masks.
        scored = [{k: v for k, v in r.items() if not (iou_type == "segm" and k == "bbox")} for r in results]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(scored), iou_type)
            settings = evaluator.params
            settings.imgIds, settings.catIds = image_ids, category_ids
            settings.areaRng, settings.areaRngLbl, settings.maxDets = ranges, list(areas), [100]
            evaluator.evaluate()
        evaluated = evaluator.evalImgs  # class-major, then area range, then image
    found = {}
    for a, (area, (low, high)) in enumerate(zip(areas, ranges)):
        classes = []
        for k, category in enumerate(category_ids):
            counted = [sum(1 for g in ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[i], catIds=[category]))
                           if not g["iscrowd"] and low <= g["area"] <= high) for i in image_ids]
            offset = (k * len(ranges) + a) * n
            classes.append(_class_matches([evaluated[offset + i] for i in range(n)], counted))
        found[area] = Matches(n, classes)
    return found


def _class_matches(per_image: list, counted: list) -> ClassMatches:
    """One class's ClassMatches from pycocotools' evalImgs of each image (None: nothing there) and the objects
    that count in each image."""
    images, scores, matched, ignored = [], [], [], []
    for i, found in enumerate(per_image):
        if found is None or not len(found["dtScores"]):
            continue
        images.append(np.full(len(found["dtScores"]), i))
        scores.append(np.asarray(found["dtScores"], float))
        matched.append(np.asarray(found["dtMatches"]) > 0)
        ignored.append(np.asarray(found["dtIgnore"], bool))
    if not images:
        empty = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        return ClassMatches(np.zeros(0, int), np.zeros(0), empty, empty, np.asarray(counted))
    score = np.concatenate(scores)
    order = np.argsort(-score, kind="mergesort")  # pycocotools' order, ties by image
    hit, skip = np.concatenate(matched, axis=1)[:, order], np.concatenate(ignored, axis=1)[:, order]
    return ClassMatches(np.concatenate(images)[order], score[order], hit & ~skip, ~hit & ~skip, np.asarray(counted))


def resample_weights(image_count: int, resamples: int, seed: int) -> np.ndarray:
    """`[resamples, image_count]`: how often each image is drawn in each bootstrap resample."""
    draws = np.random.default_rng(seed).integers(0, image_count, size=(resamples, image_count))
    weights = np.zeros((resamples, image_count))
    np.add.at(weights, (np.repeat(np.arange(resamples), image_count), draws.ravel()), 1)
    return weights


def mean_average_precision(matches: Matches, weights: np.ndarray) -> np.ndarray:
    """COCO mAP@[.5:.95] in percent for each row of image `weights` (`[B, images]`); NaN where no class has a
    ground-truth object. A row of ones is the split itself."""
    weights = np.atleast_2d(np.asarray(weights, float))
    out = np.empty(len(weights))
    for start in range(0, len(weights), CHUNK):
        out[start:start + CHUNK] = _map_chunk(matches, weights[start:start + CHUNK])
    return out


def _map_chunk(matches: Matches, weights: np.ndarray) -> np.ndarray:
    rows, thresholds = len(weights), len(IOU_THRESHOLDS)
    total, counted = np.zeros(rows), np.zeros(rows)
    for found in matches.classes:
        objects = weights @ found.ground_truth                         # [B] objects that count
        present = objects > 0
        if not present.any():
            continue
        detections = len(found.score)
        precision = np.zeros((rows, thresholds, len(RECALL_POINTS)))
        if detections:
            drawn = weights[:, found.image][:, None, :]                  # [B, 1, N]
            tps = np.cumsum(found.tp[None] * drawn, axis=2)               # whole numbers: weights are counts
            fps = np.cumsum(found.fp[None] * drawn, axis=2)
            ratio = tps / (tps + fps + np.spacing(1))
            ratio = np.maximum.accumulate(ratio[..., ::-1], axis=2)[..., ::-1]  # precision made monotone
            index = first_reaching(tps, np.where(present, objects, 1))
            inside = index < detections
            taken = np.take_along_axis(ratio, np.minimum(index, detections - 1), axis=2)
            precision = np.where(inside, taken, 0.0)
        total += np.where(present, precision.sum(axis=(1, 2)), 0)
        counted += np.where(present, precision[0].size, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, 100 * total / counted, np.nan)


def first_reaching(tps: np.ndarray, objects: np.ndarray, points: np.ndarray = RECALL_POINTS) -> np.ndarray:
    """`[B, T, P]`: for each row of `tps` (`[B, T, N]`, whole numbers, non-decreasing), the first position whose
    recall `tps / objects[b]` reaches each recall point: pycocotools' `searchsorted(recall, points, "left")`.

    Recall reaches point r exactly when the count reaches the least whole number v with v / objects >= r
    (division is monotone), so all rows are searched at once on whole numbers, each row lifted by its own
    offset, with no rounding anywhere.
    """
    rows, thresholds, n = tps.shape
    needed = np.ceil(points[None] * objects[:, None])                      # [B, P], then corrected to the
    needed = np.where((needed - 1) / objects[:, None] >= points, needed - 1, needed)  # exact least one
    needed = np.where(needed / objects[:, None] < points, needed + 1, needed)
    top = tps.max() + 1
    needed = np.minimum(needed, top)                                      # beyond every count: position n
    offset = (np.arange(rows * thresholds) * (top + 1)).reshape(rows, thresholds, 1)
    found = np.searchsorted((tps + offset).ravel(), (needed[:, None, :] + offset).ravel(), side="left")
    return found.reshape(rows, thresholds, -1) - (np.arange(rows * thresholds) * n).reshape(rows, thresholds, 1)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval holding `level` of `values` (NaNs left out)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def win_share(differences: np.ndarray) -> float:
    """P(A > B) over paired replicates of A - B; a tie counts half (identical models: exactly 0.5)."""
    differences = np.asarray(differences)
    return float(np.mean(differences > 0) + 0.5 * np.mean(differences == 0))


def metric_matches(split_json: Path, results: list) -> dict:
    """The matches behind every metric with an interval: `{segm_map, segm_map_small, segm_map_medium,
    segm_map_large, bbox_map: Matches}` (AP by COCO's object sizes for masks only)."""
    segm = match_sizes(split_json, results, "segm")
    return {"segm_map": segm["all"], **{f"segm_map_{size}": segm[size] for size in SIZES},
            "bbox_map": match(split_json, results, "bbox")}


def bootstrap(split_json: Path, results: list, resamples: int, seed: int) -> tuple[dict, dict]:
    """Intervals of every metric of `metric_matches` on a split and the replicates behind them (see `intervals`)."""
    return intervals(metric_matches(split_json, results), resamples, seed)


def intervals(matches: dict, resamples: int, seed: int) -> tuple[dict, dict]:
    """Intervals of the mAPs of `matches` (`{metric: Matches}`, e.g. segm_map, bbox_map) and their replicates.

    Returns `({<metric>_low, <metric>_high, ...}, {<metric>: [...], ...})`; a resample with no object of a metric's
    size scores None (COCO's -1) and the interval is taken over the others. The replicates are rounded to 1e-4 so
    that the files they are written to are the same on every machine.
    """
    fields, replicates = {}, {}
    for metric, found in matches.items():
        values = np.round(mean_average_precision(found, resample_weights(found.image_count, resamples, seed)), 4)
        low, high = interval(values) if np.isfinite(values).any() else (None, None)
        fields.update({f"{metric}_low": low, f"{metric}_high": high})
        replicates[metric] = [None if np.isnan(v) else float(v) for v in values]
    return fields, replicates


def _pooled(matches: Matches) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every detection of every class at IoU 0.5, sorted by score: scores, true and false positives, objects."""
    score = np.concatenate([c.score for c in matches.classes])
    tp = np.concatenate([c.tp[0] for c in matches.classes])
    fp = np.concatenate([c.fp[0] for c in matches.classes])
    order = np.argsort(-score, kind="mergesort")
    objects = int(sum(c.ground_truth.sum() for c in matches.classes))
    return score[order], tp[order], fp[order], objects


def best_f1_threshold(matches: Matches) -> float | None:
    """The score threshold (keep detections scoring at least it) with the highest F1 at mask IoU 0.5; None
    when nothing was detected."""
    score, tp, fp, objects = _pooled(matches)
    if not len(score) or objects == 0:
        return None
    tps, fps = np.cumsum(tp), np.cumsum(fp)
    last = np.r_[score[1:] != score[:-1], True]  # a threshold keeps every detection of equal score
    f1 = 2 * tps / (tps + fps + objects)
    candidates = np.flatnonzero(last)
    return float(score[candidates[np.argmax(f1[candidates])]])


def precision_recall_f1(matches: Matches, threshold: float | None) -> dict:
    """Precision, recall and F1 in percent at mask IoU 0.5 of the detections scoring at least `threshold`."""
    score, tp, fp, objects = _pooled(matches)
    kept = score >= threshold if threshold is not None else np.zeros(len(score), bool)
    hits, misses = int(tp[kept].sum()), int(fp[kept].sum())
    precision = 100 * hits / (hits + misses) if hits + misses else 0.0
    recall = 100 * hits / objects if objects else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def deployment(val_json: Path, val_results: list, test_json: Path, test_results: list) -> dict:
    """The F1-best score threshold on the validation split, and precision, recall and F1 with it on the test split
    (segm, IoU 0.5): `{deploy_threshold, deploy_precision, deploy_recall, deploy_f1}`."""
    return deploy_scores(match(val_json, val_results, "segm"), match(test_json, test_results, "segm"))


def deploy_scores(val_matches: Matches, test_matches: Matches) -> dict:
    """`deployment` from the segm matches of both splits."""
    threshold = best_f1_threshold(val_matches)
    scores = precision_recall_f1(test_matches, threshold)
    return {"deploy_threshold": threshold, **{f"deploy_{k}": round(v, 2) for k, v in scores.items()}}
