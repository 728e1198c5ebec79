"""Tiling: a large image seen as overlapping tiles, each at the template's input size, and the predictions of
all tiles (and of the whole image, downscaled) put back together in the image's own pixels.

Small objects vanish when a 2048 x 1024 frame is shrunk to a 480 px input; a tile of 512 px keeps them 4 times
larger. The parts here know nothing of models: a predictor is `inference.predict_image`'s, COCO results in and out.

    tiles          the tile boxes of one image: `size` px squares, neighbours overlapping by `overlap` of a
                   tile at least, spread evenly from border to border (the last tile ends at the image's edge)
    auto           tile size and overlap from the training split's objects (OTX 2.x's adaptive tiling): the tile
                   is sized so that the mean object covers OBJECT_TILE_RATIO of it, and the overlap so that
                   the largest object fits in a neighbour whole; no tiling when that tile would hold most of
                   the image anyway
    crop_objects   a tile's training targets: an object cut by the tile's border is kept, cropped, when at
                   least `min_share` of its area is inside, else left out
    merge          greedy non-maximum merging by intersection over the smaller mask (SAHI's GREEDYNMM with IOS,
                   REFERENCE section 10, compared here with the union merged so far): a cut object's two halves
                   are one object, which IoU-NMS would keep twice
    predict_tiled  every tile and the whole image through a predictor, shifted back and merged
"""

import math
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_utils

OBJECT_TILE_RATIO = 0.03   # OTX 2.x's default: the mean object covers 3% of a tile's area
MAX_OVERLAP = 0.5          # an object larger than half a tile is left to the whole image's prediction
MERGE_THRESHOLD = 0.5      # IoS above which two detections of one class are one object (SAHI's default)


@dataclass(frozen=True)
class Tiling:
    size: int            # tile side, in the image's pixels
    overlap: float       # the share of a tile its neighbour covers at least, in [0, 1)
    min_share: float = 0.5  # training: an object cut by a tile's border is kept when this share of it is inside


def axis_starts(length: int, size: int, overlap: float) -> list:
    """Where tiles of `size` start along an axis of `length` so that neighbours overlap by `overlap` at least,
    spread evenly: the first at 0, the last ending at `length`."""
    if length <= size:
        return [0]
    stride = size * (1 - overlap)
    count = math.ceil((length - size) / stride) + 1
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def tiles(width: int, height: int, tiling: Tiling) -> list:
    """Every tile box (x0, y0, x1, y1) of a width x height image, row by row."""
    return [(x, y, min(x + tiling.size, width), min(y + tiling.size, height))
            for y in axis_starts(height, tiling.size, tiling.overlap)
            for x in axis_starts(width, tiling.size, tiling.overlap)]


def auto(object_areas: list, object_sides: list, image_sides: list) -> Tiling | None:
    """Tiling for a training split whose objects have these areas (px^2) and largest sides (px), in images
    whose shorter sides are `image_sides`; None when the tile would cover most of a typical image."""
    if not object_areas:
        return None
    size = math.ceil(math.sqrt(float(np.mean(object_areas)) / OBJECT_TILE_RATIO))
    if size >= 0.75 * float(np.median(image_sides)):
        return None
    overlap = min(float(np.max(object_sides)) / size, MAX_OVERLAP)
    return Tiling(size, round(overlap, 3))


def _mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a height x width uint8 mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def encoded(mask: np.ndarray) -> dict:
    """A binary mask as COCO's compressed RLE, its counts a string (JSON-ready), as COCO results hold it."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def crop_objects(annotations: list, height: int, width: int, box: tuple, min_share: float) -> list:
    """The COCO annotations of one tile (`box` in the image's pixels), in the tile's pixels: an object whose
    share inside the tile is at least `min_share` is kept with its mask cropped and its box fitted to that,
    any other left out. Box-only objects (no segmentation) are cropped by box area alike."""
    x0, y0, x1, y1 = box
    kept = []
    for annotation in annotations:
        if annotation.get("segmentation"):
            mask = _mask(annotation["segmentation"], height, width)
            total, inside = int(mask.sum()), mask[y0:y1, x0:x1]
            if total == 0 or inside.sum() < min_share * total:
                continue
            ys, xs = np.nonzero(inside)
            fitted = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
            kept.append({**annotation, "segmentation": encoded(inside), "bbox": fitted, "area": float(inside.sum())})
        else:
            bx, by, bw, bh = annotation["bbox"]
            cx0, cy0, cx1, cy1 = max(bx, x0), max(by, y0), min(bx + bw, x1), min(by + bh, y1)
            if bw * bh <= 0 or cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < min_share * bw * bh:
                continue
            kept.append({**annotation, "bbox": [cx0 - x0, cy0 - y0, cx1 - cx0, cy1 - cy0],
                         "area": float((cx1 - cx0) * (cy1 - cy0))})
    return kept


def shifted(results: list, box: tuple, height: int, width: int) -> list:
    """COCO results predicted on a tile, in the whole image's pixels (masks pasted into a height x width
    canvas)."""
    x0, y0, x1, y1 = box
    moved = []
    for result in results:
        canvas = np.zeros((height, width), np.uint8)
        canvas[y0:y1, x0:x1] = mask_utils.decode(result["segmentation"])
        bx, by, bw, bh = result["bbox"]
        moved.append({**result, "bbox": [bx + x0, by + y0, bw, bh], "segmentation": encoded(canvas)})
    return moved


def intersection_over_smaller(a: dict, b: dict) -> float:
    smaller = min(float(mask_utils.area(a)), float(mask_utils.area(b)))
    if smaller == 0:
        return 0.0
    return float(mask_utils.area(mask_utils.merge([a, b], intersect=True))) / smaller


def merge(results: list, threshold: float = MERGE_THRESHOLD) -> list:
    """Greedy non-maximum merging: best score first, each detection absorbs the lower-scored ones of its class
    whose mask's intersection with the union absorbed so far, over the smaller of the two, exceeds `threshold`,
    until none joins; the merged detection keeps the best score, the union of the masks and that union's box.
    (SAHI compares with the best detection alone, so the two halves of an object cut by a tile border join only
    when the best one holds both; comparing with the union lets the whole image's detection bridge them.)
    A mask whose extent does not touch the union's cannot overlap it and is not compared, so an image of many
    tiles and thousands of detections merges in about linear time, with the same result."""
    if not results:
        return []
    order = np.asarray(sorted(range(len(results)), key=lambda i: -results[i]["score"]))
    extents = mask_utils.toBbox([r["segmentation"] for r in results]).reshape(-1, 4)[order]  # x, y, w, h by rank
    extents[:, 2:] += extents[:, :2]
    categories = np.asarray([r["category_id"] for r in results])[order]
    free = np.ones(len(results), bool)  # by rank
    merged = []
    for rank in range(len(order)):
        if not free[rank]:
            continue
        free[rank] = False
        best = results[order[rank]]
        union, grew = _absorb(results, order, extents, categories, free, rank, threshold)
        if not grew:
            merged.append(best)
            continue
        union = {**union, "counts": union["counts"].decode("ascii") if isinstance(union["counts"], bytes)
                 else union["counts"]}
        merged.append({**best, "segmentation": union, "bbox": [float(v) for v in mask_utils.toBbox(union)]})
    return merged


def _absorb(results, order, extents, categories, free, rank: int, threshold: float) -> tuple:
    """The union of the detection at `rank` (of the score order) and every free one of its class it absorbs,
    pass after pass in score order until none joins; marks those taken in `free`. Returns (union, grew)."""
    union, bounds, grew = results[order[rank]]["segmentation"], extents[rank].copy(), False
    joined = True
    while joined:
        joined, start = False, 0
        while True:
            touching = free[start:] & (categories[start:] == categories[rank]) & \
                (extents[start:, 0] <= bounds[2]) & (extents[start:, 2] >= bounds[0]) & \
                (extents[start:, 1] <= bounds[3]) & (extents[start:, 3] >= bounds[1])
            taken = next((q for q in np.flatnonzero(touching) + start if
                          intersection_over_smaller(union, results[order[q]]["segmentation"]) > threshold), None)
            if taken is None:
                break
            free[taken] = False
            union, grew, joined = mask_utils.merge([union, results[order[taken]]["segmentation"]]), True, True
            bounds[:2] = np.minimum(bounds[:2], extents[taken, :2])
            bounds[2:] = np.maximum(bounds[2:], extents[taken, 2:])
            start = taken + 1  # as one pass over the score order: the union grown, the pass goes on from here
    return union, grew


def predict_tiled(predict, pixels: np.ndarray, tiling: Tiling, image_id: int = 0) -> list:
    """`predict(pixels, image_id)` (COCO results in those pixels) on every tile of an RGB image and on the
    whole image, merged into one list in the image's pixels."""
    height, width = pixels.shape[:2]
    found = list(predict(pixels, image_id))
    for box in tiles(width, height, tiling):
        x0, y0, x1, y1 = box
        found += shifted(predict(pixels[y0:y1, x0:x1], image_id), box, height, width)
    return merge(found)
