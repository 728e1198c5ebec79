"""Small demo datasets written in each real dataset's own on-disk layout.

The default benchmark runs on these so that it needs no download: they go through the very importers
the real Cityscapes, Oxford-IIIT Pets and WGISD data go through. Every object class has its own shape
and texture (`shapes.py`), so a small model learns them in minutes on a CPU. Same counts and seed give
the same pixels.
"""

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageFilter

from pipelines.datasets import shapes
from pipelines.datasets.cityscapes import EVALUATED_CLASSES

# Cityscapes label id -> (shape, colour) of the demo objects. 29 (caravan) has instances but is not
# evaluated: the importer must drop it.
CITYSCAPES_LOOKS = {
    24: ("ellipse", (220, 40, 60)),
    25: ("triangle", (255, 0, 0)),
    26: ("box", (0, 0, 142)),
    27: ("hexagon", (0, 150, 70)),
    28: ("cross", (0, 200, 200)),
    31: ("ring", (120, 80, 20)),
    32: ("star", (230, 230, 30)),
    33: ("diamond", (119, 11, 32)),
    29: ("box", (250, 170, 30)),
}
CITYSCAPES_ROAD, CITYSCAPES_SKY = 7, 23

# Oxford-IIIT Pets: a capitalised breed is a cat, a lower-case one a dog (as in the real list.txt).
PETS_BREEDS = {"Abyssinian": (1, 1), "Bengal": (6, 1), "beagle": (3, 2), "pug": (28, 2)}  # name: (class id, species)
PETS_LOOKS = {1: ("ellipse", (230, 140, 40), 0), 2: ("hexagon", (110, 70, 40), 2)}  # species: shape, colour, pattern

# WGISD varieties, told apart by berry colour and size.
WGISD_VARIETIES = {"CDY": ((200, 210, 90), 4), "CFR": ((120, 30, 60), 5), "CSV": ((40, 30, 90), 3),
                   "SVB": ((150, 220, 120), 6), "SYH": ((90, 20, 120), 4)}


# The small-object demo (`make_cityscapes(..., **SMALL_OBJECTS)`): frames three times the default's sides with
# objects no larger, so that a template's input shrinks most of them under COCO's small (the case of real
# Cityscapes frames seen at 480 px, where a pedestrian becomes a few pixels) and tiling has something to win.
SMALL_OBJECTS = {"size": (768, 384), "sides": (16, 40), "objects": (6, 14)}


def make_cityscapes(root: Path, n_train: int, n_val: int, seed: int, size=(256, 128), sides=(18, 44),
                    objects=(2, 6)) -> None:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_{instanceIds,labelIds}.png:
    `size` (width, height) frames, each with `objects` (a range) objects of `sides` px (a range)."""
    rng = np.random.default_rng(seed)
    width, height = size
    for split, count, city in (("train", n_train, "aachen"), ("val", n_val, "frankfurt")):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for frame in range(count):
            stem = f"{city}_000000_{frame:06d}"
            image = shapes.background(rng, height, width)
            ids = np.full((height, width), CITYSCAPES_SKY, dtype=np.uint16)
            ids[height // 2:] = CITYSCAPES_ROAD
            taken, next_instance = [], {}
            label_ids = list(EVALUATED_CLASSES) + [29]
            for _ in range(int(rng.integers(*objects))):
                label_id = int(rng.choice(label_ids))
                box = shapes.random_box(rng, height, width, *sides, taken)
                if box is None:
                    continue
                taken.append(box)
                # Now and then a group of objects without instance ids: a crowd region.
                crowd = label_id in EVALUATED_CLASSES and rng.random() < 0.08
                mask = _paint(rng, image, CITYSCAPES_LOOKS[label_id], box)
                if crowd:
                    ids[mask] = label_id
                else:
                    ids[mask] = label_id * 1000 + next_instance.get(label_id, 0)
                    next_instance[label_id] = next_instance.get(label_id, 0) + 1
            label_map = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
            Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids).save(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png")
            Image.fromarray(label_map).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def make_pets(root: Path, n_trainval: int, n_test: int, seed: int) -> None:
    """images/<Breed>_<n>.jpg, annotations/{trimaps/*.png, xmls/*.xml, list.txt, trainval.txt, test.txt}."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "annotations/trimaps", "annotations/xmls"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    breeds = list(PETS_BREEDS)
    lines = {"trainval": [], "test": []}
    for index in range(n_trainval + n_test):
        breed = breeds[index % len(breeds)]
        class_id, species = PETS_BREEDS[breed]
        name = f"{breed}_{index // len(breeds) + 1}"
        width, height = (int(v) for v in rng.integers([180, 150], [261, 221]))
        image = shapes.background(rng, height, width)
        side = int(min(width, height) * rng.uniform(0.45, 0.8))
        box = shapes.random_box(rng, height, width, side, side, [])
        mask = _paint(rng, image, PETS_LOOKS[species][:2], box, pattern=PETS_LOOKS[species][2])
        # Trimap: 1 pet, 2 background, 3 a band on the pet's outline.
        inner, outer = _morph(mask, ImageFilter.MinFilter(5)), _morph(mask, ImageFilter.MaxFilter(5))
        trimap = np.full(mask.shape, 2, dtype=np.uint8)
        trimap[outer] = 3
        trimap[inner] = 1
        Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=95)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
        head = (box[0], box[1], box[2], box[1] + (box[3] - box[1]) // 3)  # the xmls box only the head
        (root / "annotations" / "xmls" / f"{name}.xml").write_text(_voc_xml(name, width, height, species, head))
        lines["trainval" if index < n_trainval else "test"].append(f"{name} {class_id} {species} {index % 2 + 1}")
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n#BREED ID: 1-25:Cat 1:12:Dog\n"
    (root / "annotations" / "list.txt").write_text(header + "\n".join(lines["trainval"] + lines["test"]) + "\n")
    for split, split_lines in lines.items():
        (root / "annotations" / f"{split}.txt").write_text("\n".join(split_lines) + "\n")


def make_wgisd(root: Path, n_train: int, n_test: int, seed: int, size=(256, 192)) -> None:
    """data/<VARIETY>_<n>.{jpg,txt,npz} and {train,test,train_masked,test_masked}.txt at the root.

    As in the real set, a quarter of the images carry boxes only (no npz) and appear in train.txt or
    test.txt but not in the *_masked.txt lists.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    (root / "data").mkdir(parents=True, exist_ok=True)
    varieties = list(WGISD_VARIETIES)
    lists = {"train": [], "test": [], "train_masked": [], "test_masked": []}
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        variety = varieties[index % len(varieties)]
        name = f"{variety}_{1000 + index}"
        color, berry = WGISD_VARIETIES[variety]
        image = shapes.background(rng, height, width)
        masks, taken = [], []
        for _ in range(int(rng.integers(2, 6))):
            box = shapes.random_box(rng, height, width, 28, 60, taken)
            if box is None:
                continue
            taken.append(box)
            cluster = _cluster(rng, image, box, color, berry)
            masks = [m & ~cluster for m in masks] + [cluster]  # a later cluster hides what it covers
        masks = [m for m in masks if m.any()]
        boxes = [_yolo_box(m) for m in masks]
        Image.fromarray(image).save(root / "data" / f"{name}.jpg", quality=95)
        (root / "data" / f"{name}.txt").write_text("".join(f"0 {b}\n" for b in boxes))
        has_masks = index % 4 != 3
        if has_masks:
            np.savez_compressed(root / "data" / f"{name}.npz", np.stack(masks, axis=-1).astype(np.uint8))
            lists[f"{split}_masked"].append(name)
        lists[split].append(name)
    for list_name, names in lists.items():
        (root / f"{list_name}.txt").write_text("\n".join(names) + "\n")


def make_coco_json(root: Path, n_train: int, n_test: int, seed: int, size=(160, 120)) -> None:
    """COCO the way users keep it: photos/*.jpg, labels/{train,test}.json, category ids from 0.

    Boxes are written as polygons, every other shape as compressed RLE, so both paths are exercised.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    looks = {0: ("box", (200, 60, 40)), 1: ("ellipse", (40, 160, 60)), 2: ("triangle", (50, 70, 200))}
    (root / "photos").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("test", n_test)):
        images, annotations = [], []
        for index in range(count):
            name = f"{split}_{index:04d}.jpg"
            image = shapes.background(rng, height, width)
            taken = []
            for _ in range(int(rng.integers(1, 4))):
                box = shapes.random_box(rng, height, width, 24, 56, taken)
                if box is None:
                    continue
                taken.append(box)
                category = int(rng.integers(0, len(looks)))
                mask = _paint(rng, image, looks[category], box)
                if looks[category][0] == "box":
                    ys, xs = np.nonzero(mask)
                    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                    segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
                else:
                    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                    segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": category,
                                    "segmentation": segmentation, "bbox": _xywh(mask), "area": int(mask.sum()),
                                    "iscrowd": 0})
            Image.fromarray(image).save(root / "photos" / name, quality=95)
            images.append({"id": index, "file_name": name, "width": width, "height": height})
        categories = [{"id": i, "name": name} for i, name in enumerate(["brick", "leaf", "sail"])]
        (root / "labels" / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _xywh(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _cluster(rng, image, box, color, berry) -> np.ndarray:
    """Paints a grape cluster (berries inside an ellipse) into `image`; returns its mask."""
    height, width = image.shape[:2]
    region = shapes.shape_mask("ellipse", height, width, box)
    ys, xs = np.nonzero(region)
    mask = np.zeros_like(region)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in rng.choice(len(ys), size=min(len(ys), 60), replace=False):
        mask |= (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= berry**2
    shade = shapes.texture(rng, height, width, color, pattern=3)
    image[mask] = shade[mask]
    return mask


def _paint(rng, image, look, box, pattern=None) -> np.ndarray:
    """Draws shape `look` = (shape, colour) into `image` inside `box`; returns the object's mask."""
    height, width = image.shape[:2]
    shape, color = look
    mask = shapes.shape_mask(shape, height, width, box)
    tint = np.clip(np.asarray(color) + rng.integers(-20, 21, size=3), 0, 255)
    fill = shapes.texture(rng, height, width, tint, int(rng.integers(0, 4)) if pattern is None else pattern)
    image[mask] = fill[mask]
    return mask


def _morph(mask: np.ndarray, image_filter) -> np.ndarray:
    """Erodes (MinFilter) or dilates (MaxFilter) a bool mask."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(image_filter)) > 0


def _yolo_box(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return f"{(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"


def _voc_xml(name, width, height, species, box) -> str:
    label = "cat" if species == 1 else "dog"
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size><object><name>{label}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
            f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>\n")
