"""Import a dataset with Datumaro, assign train/val/test, and write one COCO instances json per split.

Output layout (one folder per dataset key):

    <out>/train.json, val.json, test.json   COCO instances, RLE masks, 1-based category ids (pipelines.splits)
    <out>/images/<item id>.<ext>            the images, copied byte for byte; one that must change (mode, format,
                                            bit depth, EXIF orientation) written as an RGB PNG without any
                                            orientation tag, in the orientation its annotations use
    <out>/stats.json                        images and instances per split and class; what was converted
                                            or skipped, and why

What the input may not bend: an image (its file) in two subsets that map to different roles, or an item
id naming two files, stops the stage (`check_overlaps`). An image's EXIF orientation is applied or not as
the annotations' own size says (`_orientation`); 16-bit images are scaled to 8 bits by their bit depth
(`_eight_bits`); objects whose polygons lie outside the image are skipped. Each change is named in the
statistics; `pipelines.inference.load_image` applies an orientation only a user's raw photo still carries.
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
from PIL import ExifTags, ImageOps
from PIL import Image as PILImage
from tqdm import tqdm

from pipelines.config import DatasetSpec
from pipelines.datasets import cityscapes, coco_json, pets, wgisd
from pipelines.datasets.layout import DatasetLayoutError, ItemError, outside_image
from pipelines.splits import ROLES, split_file

ORIENTATION = ExifTags.Base.Orientation
# The EXIF orientations that turn an image a quarter (5 to 8): viewers show it with width and height swapped.
QUARTER_TURNS = (5, 6, 7, 8)
# The names of the PNG chunks that may hold an orientation: EXIF, ImageMagick's raw EXIF and XMP text.
PNG_ORIENTATION_CHUNKS = (b"eXIf", b"Raw profile type exif", b"XML:com.adobe.xmp")
# Modes of more than 8 bits per pixel (16-bit PNG and TIFF, 32-bit integer or float TIFF): PIL's own
# convert("RGB") clips their values at 255, which turns most of a 16-bit image white.
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
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
    """One image that passed the checks: its item, size as prepared, why it must be converted ("" if not), its
    objects."""
    item: DatasetItem
    width: int
    height: int
    conversion: str
    objects: list                  # (label index, is crowd, RLE) per object
    skipped_objects: list          # {"image", "reason"} per object left out
    transpose: bool = False        # apply the EXIF orientation when writing the image


@dataclass
class Picture:
    """What `_inspect_image` learnt of an image file: its size as stored, its EXIF orientation (1: none) and why
    its pixels must be converted, orientation apart."""
    width: int
    height: int
    orientation: int
    conversions: list


def check_item(item: DatasetItem) -> Sample:
    """Decodes the image and every mask of `item` once; raises `ItemError` when the image is unusable.

    Unusable: unreadable, truncated, its masks broken or of another size. An image in a mode or
    format the models do not take (grayscale, CMYK, RGBA, 16-bit, PNG data under a .jpg name), or with an
    EXIF orientation, is usable and marked for conversion to an RGB PNG.
    """
    if item.media is None:
        raise ItemError("no image")
    picture = _inspect_image(Path(item.media.path))
    transpose, turned, width, height = _orientation(item, picture)
    skipped = []
    objects = _instances(item, height, width, skipped)
    conversion = "; ".join(([turned] if turned else []) + picture.conversions)
    return Sample(item, width, height, conversion, objects, skipped, transpose)


def _orientation(item: DatasetItem, picture: Picture) -> tuple[bool, str, int, int]:
    """Whether to apply the image's EXIF orientation, why ("" without one), and the width and height then.

    The annotations are taken as drawn on the image the way their tool showed it: when their own size (the
    one the importer read, else a mask's) is the size as shown, the orientation is applied; when it is the
    size as stored, the pixels stay as stored. Without a size, or where the two agree (a half turn, a
    mirror, a square image), as viewers show it. Either way the prepared image carries no orientation.
    """
    stored = (picture.width, picture.height)
    if picture.orientation == 1:
        return False, "", *stored
    shown = stored[::-1] if picture.orientation in QUARTER_TURNS else stored
    annotated, tag = _annotated_size(item), f"EXIF orientation {picture.orientation}"
    as_text = lambda size: f"{size[1]} x {size[0]}"  # noqa: E731 (height x width, as in the other reasons)
    if annotated is None:
        return True, f"{tag} applied, as viewers show the image: the annotations give no size", *shown
    if annotated == shown == stored:
        return True, f"{tag} applied, as viewers show the image: turned or not, it has the annotations' size", *shown
    if annotated == shown:
        return True, f"{tag} applied: the annotations are {as_text(shown)}, the image's size as shown", *shown
    if annotated == stored:
        return False, f"{tag} ignored: the annotations are {as_text(stored)}, the image's size as stored", *stored
    raise ItemError(f"annotations of {as_text(annotated)} on an image of {as_text(stored)} as stored, "
                    f"{as_text(shown)} as shown ({tag})")


def _annotated_size(item: DatasetItem) -> tuple[int, int] | None:
    """(width, height) the annotations of `item` were drawn at: the importer's image size, else a mask's."""
    if item.media.has_size:
        height, width = item.media.size
        return width, height
    for ann in item.annotations:
        if isinstance(ann, Mask):
            height, width = ann.image.shape[:2]
            return width, height
    return None


def write_coco(samples: list[Sample], labels: list[str], out_dir: Path, role: str) -> dict:
    """Writes split `role`'s json (pipelines.splits) and the images; returns the split's statistics."""
    images, annotations = [], []
    counts, crowd = Counter(), Counter()
    # object_sizes: [area in pixels, image width, image height] per object (crowd regions left out), what the
    # report needs to tell how small each template's input makes the objects.
    stats = {"images_without_objects": 0, "converted": [], "skipped_objects": [], "object_sizes": []}
    for sample in sorted(samples, key=lambda s: s.item.id):
        file_name = _store_image(Path(sample.item.media.path), out_dir, sample.item.id, sample)
        if sample.conversion:
            stats["converted"].append({"image": sample.item.id, "reason": sample.conversion})
        stats["skipped_objects"] += sample.skipped_objects
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": sample.width, "height": sample.height})
        stats["images_without_objects"] += not sample.objects
        for label, is_crowd, rle in sample.objects:
            (crowd if is_crowd else counts)[labels[label]] += 1
            if not is_crowd:
                stats["object_sizes"].append([int(mask_utils.area(rle)), sample.width, sample.height])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                                "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                                "iscrowd": int(is_crowd)})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)]}
    split_file(out_dir, role).write_text(json.dumps(coco))
    return {"images": len(images), "instances": dict(counts), "crowd_regions": dict(crowd), **stats}


def _inspect_image(path: Path) -> Picture:
    """The file's size, orientation and conversions, after reading the whole file once."""
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
            conversions = [f"{image.format} data under a {path.suffix} name"] if image.format != expected else []
            if image.mode in HIGH_BIT_MODES:
                with PILImage.open(path) as again:  # a verified PNG cannot be decoded any more
                    conversions.append(_eight_bits(again)[1])
            elif image.mode != "RGB" and not conversions:
                conversions.append(f"{image.mode} image")
            return Picture(image.width, image.height, _orientation_tag(path, image), conversions)
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
        raise ItemError(f"{path}: unreadable image ({error})") from None


def _orientation_tag(path: Path, image: PILImage.Image) -> int:
    """The EXIF orientation PIL's `ImageOps.exif_transpose` (and so `load_image`) applies to the file, 1 for none.

    For a PNG, PIL's getexif() decodes the pixels (its EXIF may follow them), the cost `verify` saves: a PNG is
    asked only when its bytes name a chunk that may hold an orientation (a match by chance costs a decode).
    """
    if image.format != "PNG":
        orientation = image.getexif().get(ORIENTATION, 1)
    else:
        data = path.read_bytes()
        if not any(name in data for name in PNG_ORIENTATION_CHUNKS):
            return 1
        with PILImage.open(path) as again:  # a verified PNG cannot be read any further
            orientation = again.getexif().get(ORIENTATION, 1)
    return orientation if orientation in range(2, 9) else 1  # other values mean nothing to exif_transpose


def _eight_bits(image: PILImage.Image) -> tuple[np.ndarray, str]:
    """A high-bit-depth (`HIGH_BIT_MODES`) grayscale image as 8-bit values, and the conversion's reason.

    The values are read as the smallest bit depth from 8 up that holds the image's maximum (float values up
    to 1 as fractions of 1) and scaled from that full range to 0..255: full-range 16-bit data is divided by
    257, a 12-bit sensor's by 4095 / 255. Dividing every image by 257 would leave 10- or 12-bit data nearly
    black, and scaling each by its own maximum would change the brightness from image to image of one camera.
    Negative values become 0.
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if image.mode == "F" and top <= 1:
        full, depth = 1.0, "fractions of 1"
    else:
        bits = max(8, int(np.ceil(top)).bit_length())
        full, depth = 2.0**bits - 1, f"{bits}-bit"
    pixels = np.round(np.clip(values, 0, full) * (255 / full)).astype(np.uint8)
    return pixels, f"{image.mode} image: values up to {top:g} read as {depth}, scaled to 8 bits"


def _store_image(source: Path, out_dir: Path, item_id: str, sample: Sample) -> str:
    """Copies the image byte for byte, or writes it as an RGB PNG when it needs a conversion: in the orientation
    its annotations use, with no orientation tag left for a loader to apply again."""
    file_name = f"images/{item_id}{'.png' if sample.conversion else source.suffix.lower()}"
    target = out_dir / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if sample.conversion:
        with PILImage.open(source) as image:
            if sample.transpose:
                image = ImageOps.exif_transpose(image)
            if image.mode in HIGH_BIT_MODES:
                image = PILImage.fromarray(_eight_bits(image)[0])
            image.convert("RGB").save(target)  # PIL writes a PNG's EXIF only when asked to
    else:
        shutil.copyfile(source, target)
    return file_name



def _instances(item, height: int, width: int, skipped: list) -> list[tuple[int, bool, dict]]:
    """(label, is crowd, RLE) per object of `item`; objects Datumaro split into parts (one group) are merged.

    Objects the benchmark cannot use (no mask, an empty mask, polygons outside the image, no label) go to
    `skipped` with the reason.
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
            polygons = [a.points for a in anns if isinstance(a, Polygon)]
            outside = len(polygons) == len(anns) and outside_image(polygons, width, height)
            reason = f"annotation {first.id}: {outside}" if outside else "an empty mask"
            skipped.append({"image": item.id, "reason": reason})
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


def check_overlaps(samples: dict, subsets: dict) -> list:
    """Refuses an image that two subsets of different roles share, or an item id that names two files; keeps
    once an image that two subsets of one role share, and returns its other listings as `skipped_images` entries.

    An image is its file (the resolved path): the same file in two roles would be trained on and tested on.
    The item id counts too because prepared images are stored by it: two files of one id would overwrite
    each other. `samples` maps (subset, item id) to a `Sample`; subsets that `subsets` does not use are ignored.
    """
    files, ids = {}, {}
    for subset, item_id in sorted(key for key in samples if key[0] in subsets):
        path = Path(samples[subset, item_id].item.media.path).resolve()
        files.setdefault(path, []).append((subset, item_id))
        ids.setdefault(item_id, {}).setdefault(path, subset)
    roles = {path: sorted({subsets[s] for s, _ in keys}, key=ROLES.index) for path, keys in files.items()}
    problems = [f"{path} is in subsets " + " and ".join(f"{s!r} ({subsets[s]})" for s, _ in keys)
                + f": the same image would be in {' and '.join(roles[path])}" for path, keys in files.items()
                if len(roles[path]) > 1]
    problems += [f"item id {item_id!r} names " + " and ".join(f"{path} (subset {s!r})" for path, s in paths.items())
                 + ": prepared images are stored by item id" for item_id, paths in ids.items() if len(paths) > 1]
    if problems:
        more = [f"and {len(problems) - 5} more"] if len(problems) > 5 else []
        raise DatasetLayoutError("an image must be in one role only, and an item id name one file:\n"
                                 + "\n".join("    " + line for line in problems[:5] + more))
    dropped = []
    for path, keys in files.items():
        for subset, item_id in keys[1:]:
            del samples[subset, item_id]
            dropped.append({"image": item_id, "subset": subset,
                            "reason": f"{path} is in subset {keys[0][0]!r} too, of the same role: kept once"})
    return dropped


def prepare(spec: DatasetSpec, root: Path, out_dir: Path) -> dict:
    """The whole stage: import dataset `spec` from `root` (its `path` under data_dir), check, split, export to
    `out_dir`. Returns the statistics also written to stats.json."""
    dataset = import_dataset(spec.format, root, spec.options)
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
    skipped += check_overlaps(samples, spec.subsets)
    check_losses(Counter(subset for subset, _ in samples), skipped, spec.subsets)
    labels = [c.name for c in dataset.categories()[AnnotationType.label]]
    roles = assign_roles([s.item for s in samples.values()], dataset.categories(), spec.subsets, spec.subsample,
                         spec.val_ratio, spec.test_ratio, spec.seed)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    stats = {"labels": labels, "skipped_images": skipped, "splits": {
        role: write_coco([samples[i.subset, i.id] for i in items], labels, out_dir, role) for role, items in roles.items()}}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
