"""Import a dataset with Datumaro, assign train/val/test, and write one COCO instances json per split.

Output layout (one folder per dataset key):

    <out>/train.json, val.json, test.json   COCO instances, RLE masks, 1-based category ids
    <out>/images/<item id>.<ext>            the images, copied byte for byte
    <out>/stats.json                        images and instances per split and class; what was converted
                                            or skipped, and why
"""

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from datumaro.components.annotation import AnnotationType, Mask, Polygon
from datumaro.components.dataset import Dataset
from datumaro.components.dataset_base import DatasetItem
from datumaro.components.environment import Environment
from datumaro.components.errors import DatasetImportError
from PIL import Image as PILImage
from tqdm import tqdm

from pipelines.datasets import cityscapes, coco_json, pets, wgisd
from pipelines.datasets.layout import DatasetLayoutError, ItemError

ROLES = ("train", "val", "test")
# Formats this project reads with its own plugins (module with check_layout, Importer, SubsetBase).
PLUGINS = {
    "cityscapes_instances": (cityscapes, cityscapes.CityscapesInstancesImporter, cityscapes.CityscapesInstancesBase),
    "oxford_pets": (pets, pets.OxfordPetsImporter, pets.OxfordPetsBase),
    "wgisd": (wgisd, wgisd.WgisdImporter, wgisd.WgisdBase),
    "coco_json": (coco_json, coco_json.CocoJsonImporter, coco_json.CocoJsonBase),
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


def assign_roles(items: list, categories, subsets: dict, subsample: float, val_ratio: float, test_ratio: float,
                 seed: int) -> dict:
    """Maps the dataset's subsets to train/val/test, then splits only what is missing.

    Official splits are kept; Datumaro's class-balanced `split` transform draws the `subsample` of
    the training images and carves out a missing test or val split from the training images.
    """
    unknown = set(subsets.values()) - set(ROLES)
    if unknown:
        raise ValueError(f"subsets maps to {sorted(unknown)}; roles are {ROLES}")
    roles = {role: [] for role in ROLES}
    for item in items:
        if item.subset in subsets:
            roles[subsets[item.subset]].append(item)
    if not roles["train"]:
        raise DatasetLayoutError(f"no images for training: subsets {sorted({i.subset for i in items})} found, "
                                 f"params map {subsets}")
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


@dataclass
class Sample:
    """One image that passed the checks: its item, size, why it must be converted ("" if not), its objects."""
    item: DatasetItem
    width: int
    height: int
    conversion: str
    objects: list                  # (label index, is crowd, RLE) per object
    skipped_objects: list          # {"image", "reason"} per object left out


def check_item(item: DatasetItem) -> Sample:
    """Decodes the image and every mask of `item` once; raises `ItemError` when the image is unusable.

    Unusable: unreadable, truncated, its masks broken or of another size. An image in a mode or
    format the models do not take (grayscale, CMYK, RGBA, PNG data under a .jpg name) is usable and
    marked for conversion to an RGB PNG.
    """
    if item.media is None:
        raise ItemError("no image")
    width, height, conversion = _inspect_image(Path(item.media.path))
    skipped = []
    objects = _instances(item, height, width, skipped)
    return Sample(item, width, height, conversion, objects, skipped)


def write_coco(samples: list[Sample], labels: list[str], out_dir: Path, role: str) -> dict:
    """Writes `<out_dir>/<role>.json` and the images; returns the split's statistics."""
    images, annotations = [], []
    counts, crowd = Counter(), Counter()
    stats = {"images_without_objects": 0, "converted": [], "skipped_objects": []}
    for sample in sorted(samples, key=lambda s: s.item.id):
        file_name = _store_image(Path(sample.item.media.path), out_dir, sample.item.id, sample.conversion)
        if sample.conversion:
            stats["converted"].append({"image": sample.item.id, "reason": sample.conversion})
        stats["skipped_objects"] += sample.skipped_objects
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": sample.width, "height": sample.height})
        stats["images_without_objects"] += not sample.objects
        for label, is_crowd, rle in sample.objects:
            (crowd if is_crowd else counts)[labels[label]] += 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                                "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                                "iscrowd": int(is_crowd)})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)]}
    (out_dir / f"{role}.json").write_text(json.dumps(coco))
    return {"images": len(images), "instances": dict(counts), "crowd_regions": dict(crowd), **stats}


def _inspect_image(path: Path) -> tuple[int, int, str]:
    """(width, height, why it must be converted or ""), after reading the whole file once."""
    if path.name.startswith("._"):
        raise ItemError(f"{path}: a macOS AppleDouble file, not an image")
    if not path.is_file():
        raise ItemError(f"image {path} is missing")
    try:
        with PILImage.open(path) as image:
            # Truncated and corrupt files fail here, not in training. A PNG's chunk checksums (verify)
            # find that at a fraction of a decode's cost; other formats are decoded.
            image.verify() if image.format == "PNG" else image.load()
            expected = PILImage.registered_extensions().get(path.suffix.lower())
            if image.format != expected:
                conversion = f"{image.format} data under a {path.suffix} name"
            elif image.mode != "RGB":
                conversion = f"{image.mode} image"
            else:
                conversion = ""
            return image.width, image.height, conversion
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
        raise ItemError(f"{path}: unreadable image ({error})") from None


def _store_image(source: Path, out_dir: Path, item_id: str, conversion: str) -> str:
    """Copies the image byte for byte, or writes it as an RGB PNG when it needs `conversion`."""
    file_name = f"images/{item_id}{'.png' if conversion else source.suffix.lower()}"
    target = out_dir / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if conversion:
        with PILImage.open(source) as image:
            image.convert("RGB").save(target)
    else:
        shutil.copyfile(source, target)
    return file_name


def _instances(item, height: int, width: int, skipped: list) -> list[tuple[int, bool, dict]]:
    """(label, is crowd, RLE) per object of `item`; objects Datumaro split into parts (one group) are merged.

    Objects the benchmark cannot use (no mask, an empty mask, no label) go to `skipped` with the reason.
    """
    skipped += [{"image": item.id, "reason": reason} for reason in item.attributes.get("skipped_objects", [])]
    parts, boxes = {}, []
    for index, ann in enumerate(item.annotations):
        if ann.type == AnnotationType.bbox:
            boxes.append(ann)
        elif ann.type in (AnnotationType.mask, AnnotationType.polygon):
            key = (ann.group, ann.label) if ann.group else ("object", index)
            parts.setdefault(key, []).append(ann)
    grouped = {ann.group for anns in parts.values() for ann in anns if ann.group}
    for box in boxes:
        if not box.group or box.group not in grouped:
            skipped.append({"image": item.id, "reason": "a box without a mask"})
    objects = []
    for anns in parts.values():
        first = anns[0]
        if first.label is None:
            skipped.append({"image": item.id, "reason": "a mask without a label"})
            continue
        rle = mask_utils.merge([_rle(ann, height, width) for ann in anns])
        if mask_utils.area(rle) == 0:
            skipped.append({"image": item.id, "reason": "an empty mask"})
            continue
        objects.append((first.label, bool(first.attributes.get("is_crowd", False)), rle))
    return objects


def _rle(ann, height: int, width: int) -> dict:
    if isinstance(ann, Mask):
        image = ann.image  # may raise ItemError: the importer found this image's annotation file broken
        if image.shape != (height, width):
            raise ItemError(f"a mask of {image.shape[0]} x {image.shape[1]} on an image of {height} x {width}")
        return mask_utils.encode(np.asfortranarray(image.astype(np.uint8, copy=False)))
    assert isinstance(ann, Polygon)
    return mask_utils.merge(mask_utils.frPyObjects([ann.points], height, width))


def _kind(reason: str) -> str:
    """A reason with its file paths replaced, so that reasons of the same kind count together."""
    return " ".join("<file>" + word[len(word.rstrip(",;:")):] if "/" in word else word for word in reason.split())


def reasons(skipped: list, limit: int = 3) -> str:
    """The commonest kinds of reason among `skipped` images, each with its count and a first example."""
    kinds = Counter(_kind(entry["reason"]) for entry in skipped)
    lines = [f"{count} x {kind}, e.g. {next(e['reason'] for e in skipped if _kind(e['reason']) == kind)}"
             for kind, count in kinds.most_common(limit)]
    if len(kinds) > limit:
        lines.append(f"{len(kinds) - limit} other kinds of reason")
    return "\n".join("    " + line for line in lines)


def check_losses(kept: Counter, skipped: list, subsets: dict) -> None:
    """Stops when a subset the benchmark uses lost every image, and warns when it lost most, saying why."""
    for subset in subsets:
        lost = [entry for entry in skipped if entry["subset"] == subset]
        total = kept[subset] + len(lost)
        if lost and not kept[subset]:
            raise DatasetLayoutError(f"all {total} images of subset {subset!r} were left out:\n{reasons(lost)}")
        if len(lost) > total / 2:
            print(f"warning: {len(lost)} of {total} images of subset {subset!r} were left out:\n{reasons(lost)}",
                  flush=True)


def prepare(format: str, root: Path, out_dir: Path, options: dict, subsets: dict, subsample: float,
            val_ratio: float, test_ratio: float, seed: int) -> dict:
    """The whole stage: import, check, split, export. Returns the statistics also written to stats.json."""
    dataset = import_dataset(format, root, options)
    # Unusable images are left out before the split so that they cannot unbalance it; the statistics name them.
    # Each item is checked as the importer makes it (asking Datumaro for anything first would read all items).
    samples, skipped = {}, []
    # No total on the progress bar: Datumaro's len() would read every item first.
    for item in tqdm(iter(dataset), desc=f"checking {Path(root).name}", unit="image", mininterval=2):
        try:
            if "skipped" in item.attributes:
                raise ItemError(item.attributes["skipped"])
            samples[item.subset, item.id] = check_item(item)
        except ItemError as error:
            skipped.append({"image": item.id, "subset": item.subset, "reason": str(error)})
    check_losses(Counter(subset for subset, _ in samples), skipped, subsets)
    labels = [c.name for c in dataset.categories()[AnnotationType.label]]
    roles = assign_roles([s.item for s in samples.values()], dataset.categories(), subsets, subsample, val_ratio,
                         test_ratio, seed)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    stats = {"labels": labels, "skipped_images": skipped, "splits": {
        role: write_coco([samples[i.subset, i.id] for i in items], labels, out_dir, role) for role, items in roles.items()}}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
