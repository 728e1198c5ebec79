"""Import a dataset with Datumaro, assign train/val/test, and write one COCO instances json per split.

Output layout (one folder per dataset key):

    <out>/train.json, val.json, test.json   COCO instances, RLE masks, 1-based category ids
    <out>/images/<item id>.<ext>            the images, copied byte for byte
    <out>/stats.json                        images and instances per split and class, skipped objects
"""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from datumaro.components.annotation import AnnotationType, Mask, Polygon
from datumaro.components.dataset import Dataset
from datumaro.components.environment import Environment
from datumaro.components.errors import DatasetImportError
from PIL import Image as PILImage

from pipelines.datasets import cityscapes, pets, wgisd
from pipelines.datasets.layout import DatasetLayoutError

ROLES = ("train", "val", "test")
# Formats this project reads with its own plugins (module with check_layout, Importer, SubsetBase).
PLUGINS = {
    "cityscapes_instances": (cityscapes, cityscapes.CityscapesInstancesImporter, cityscapes.CityscapesInstancesBase),
    "oxford_pets": (pets, pets.OxfordPetsImporter, pets.OxfordPetsBase),
    "wgisd": (wgisd, wgisd.WgisdImporter, wgisd.WgisdBase),
}


def environment() -> Environment:
    """Datumaro's built-in formats plus this project's importers."""
    env = Environment()
    env.register_plugins([cls for _, importer, base in PLUGINS.values() for cls in (importer, base)])
    return env


def import_dataset(format: str, root: Path, options: dict) -> Dataset:
    """Reads `root` in `format`; a missing root or file raises `DatasetLayoutError` saying what is expected."""
    root = Path(root)
    if format in PLUGINS:
        PLUGINS[format][0].check_layout(root)
    elif not root.exists():
        raise DatasetLayoutError(f"{root} does not exist; expected a dataset in Datumaro's {format!r} format there")
    try:
        return Dataset.import_from(str(root), format, env=environment(), **options)
    except DatasetImportError as error:
        # Datumaro wraps what an importer raises; the layout problem underneath is the useful message.
        if isinstance(error.__cause__, DatasetLayoutError):
            raise error.__cause__ from None
        raise


def assign_roles(dataset: Dataset, subsets: dict, subsample: float, val_ratio: float, test_ratio: float,
                 seed: int) -> dict:
    """Maps the dataset's subsets to train/val/test, then splits only what is missing.

    Official splits are kept; Datumaro's class-balanced `split` transform draws the `subsample` of
    the training images and carves out a missing test or val split from the training images.
    """
    unknown = set(subsets.values()) - set(ROLES)
    if unknown:
        raise ValueError(f"subsets maps to {sorted(unknown)}; roles are {ROLES}")
    roles = {role: [] for role in ROLES}
    for item in dataset:
        if item.subset in subsets:
            roles[subsets[item.subset]].append(item)
    if not roles["train"]:
        raise DatasetLayoutError(f"no images for training: subsets {sorted(dataset.subsets())} found, "
                                 f"params map {subsets}")
    categories = dataset.categories()
    if not roles["test"]:
        roles["train"], roles["test"] = _split(roles["train"], categories, 1 - test_ratio, seed)
    if subsample < 1.0:
        roles["train"], _ = _split(roles["train"], categories, subsample, seed)
    if not roles["val"]:
        roles["train"], roles["val"] = _split(roles["train"], categories, 1 - val_ratio, seed)
    return roles


def _split(items: list, categories, keep: float, seed: int) -> tuple[list, list]:
    """Class-balanced split of `items` into a `keep` share and the rest, with Datumaro's split transform."""
    part = Dataset.from_iterable(items, categories=categories)
    part = part.transform("split", task="segmentation", splits=[("a", keep), ("b", 1 - keep)], seed=seed)
    chosen = {item.id for item in part if item.subset == "a"}
    return [i for i in items if i.id in chosen], [i for i in items if i.id not in chosen]


def write_coco(items: list, labels: list[str], out_dir: Path, role: str) -> dict:
    """Writes `<out_dir>/<role>.json` and copies the images; returns the split's statistics."""
    images, annotations, skipped = [], [], []
    counts, crowd = Counter(), Counter()
    for image_id, item in enumerate(sorted(items, key=lambda i: i.id), 1):
        source = Path(item.media.path)
        file_name = f"images/{item.id}{source.suffix.lower()}"
        target = out_dir / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        with PILImage.open(source) as image:
            width, height = image.size
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for ann in item.annotations:
            if ann.type not in (AnnotationType.mask, AnnotationType.polygon):
                continue
            rle = _rle(ann, height, width)
            area = float(mask_utils.area(rle))
            if area == 0:
                skipped.append({"image": item.id, "reason": "empty mask"})
                continue
            is_crowd = bool(ann.attributes.get("is_crowd", False))
            (crowd if is_crowd else counts)[labels[ann.label]] += 1
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ann.label + 1,
                                "segmentation": rle, "area": area, "bbox": mask_utils.toBbox(rle).tolist(),
                                "iscrowd": int(is_crowd)})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)]}
    (out_dir / f"{role}.json").write_text(json.dumps(coco))
    return {"images": len(images), "instances": dict(counts), "crowd_regions": dict(crowd), "skipped": skipped}


def _rle(ann, height: int, width: int) -> dict:
    if isinstance(ann, Mask):
        image = ann.image
        if image.shape != (height, width):
            raise DatasetLayoutError(f"a mask of shape {image.shape} on an image of {height} x {width}")
        return mask_utils.encode(np.asfortranarray(image.astype(np.uint8)))
    assert isinstance(ann, Polygon)
    return mask_utils.merge(mask_utils.frPyObjects([ann.points], height, width))


def prepare(format: str, root: Path, out_dir: Path, options: dict, subsets: dict, subsample: float,
            val_ratio: float, test_ratio: float, seed: int) -> dict:
    """The whole stage: import, split, export. Returns the statistics also written to stats.json."""
    dataset = import_dataset(format, root, options)
    labels = [c.name for c in dataset.categories()[AnnotationType.label]]
    roles = assign_roles(dataset, subsets, subsample, val_ratio, test_ratio, seed)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    stats = {"labels": labels, "splits": {role: write_coco(items, labels, out_dir, role) for role, items in roles.items()}}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
