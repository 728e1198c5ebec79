"""COCO instances the way users keep them, as a Datumaro plugin: a json file anywhere plus an image folder.

Datumaro's own `coco_instances` insists on `annotations/instances_<subset>.json` beside `images/`, and
reads category id 0 as "no label". User data has neither guarantee: detectron2's
`register_coco_instances(name, metadata, json_file, image_root)` takes any json and any image root,
and cvtk's datasets count categories from 0.

    <root>/
      <any/path/train.json>            one json per split the user made (option `annotations`)
      <image root>/<file_name>         file_name as written in the json (option `image_root`)

Options: `annotations` maps a subset name to its json (a path under the root); `image_root` is the
folder the json's file names start from, one path for all subsets or one per subset (default: the
json's own folder). Classes are the json's categories in id order, whatever the first id is. A mask
may be polygons (an object's parts become one mask), compressed or uncompressed RLE; `iscrowd`
objects stay crowd regions. An object without a mask, with an unknown category or whose polygons lie
outside the image, and an image whose file is missing, are skipped and named in the statistics. Two
`images` entries with one id, or whose file names give one item id (the name without its extension),
stop the import. An image's `width` and `height` are the size its annotations were drawn at (prepare
compares it with the file's EXIF orientation); without them, the image's size as viewers show it.
"""

import json
from pathlib import Path

import pycocotools.mask as mask_utils
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset_base import DatasetItem, SubsetBase
from datumaro.components.importer import Importer
from datumaro.components.media import Image
from PIL import ExifTags, ImageOps
from PIL import Image as PILImage

from pipelines.datasets.layout import DatasetLayoutError, ItemError, outside_image, skipped_item

LAYOUT = __doc__.split("\n\n")[2]


def _options(root: Path, annotations: dict, image_root) -> dict:
    """subset -> (json file, image folder), checked to exist."""
    if not isinstance(annotations, dict) or not annotations:
        raise DatasetLayoutError(f"coco_json needs the option `annotations: {{<subset>: <json path under {root}>}}`; "
                                 f"expected:\n{LAYOUT}")
    paths = {}
    for subset, json_path in annotations.items():
        json_file = root / json_path
        if not json_file.is_file():
            raise DatasetLayoutError(f"{json_file} is missing (annotations of subset {subset!r}); expected:\n{LAYOUT}")
        folder = image_root.get(subset) if isinstance(image_root, dict) else image_root
        images = root / folder if folder is not None else json_file.parent
        if not images.is_dir():
            raise DatasetLayoutError(f"{images} is missing (images of subset {subset!r}); expected:\n{LAYOUT}")
        paths[subset] = (json_file, images)
    return paths


def check_layout(root: Path) -> None:
    if not Path(root).is_dir():
        raise DatasetLayoutError(f"{root} does not exist or is not a folder; expected:\n{LAYOUT}")


def _field(record: dict, key: str, kind, where: str):
    value = record.get(key)
    if not isinstance(value, kind):
        raise DatasetLayoutError(f"{where}: field {key!r} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


def _rle(segmentation, height: int, width: int, where: str) -> dict:
    """One RLE for the whole object, whatever form its segmentation takes in the json."""
    if not segmentation or segmentation == [[]]:
        raise ItemError(f"{where}: no mask (a box only)")
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            raise ItemError(f"{where}: no polygon with 3 or more points")
        outside = outside_image(polygons, width, height)
        if outside:
            raise ItemError(f"{where}: {outside}")
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation.get("size", [])) != [height, width]:
            raise ItemError(f"{where}: mask size {segmentation.get('size')} differs from the image's {[height, width]}")
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}
    raise ItemError(f"{where}: segmentation is neither polygons nor RLE: {str(segmentation)[:40]!r}")


def _images(coco: dict, json_file: Path, objects: dict) -> list:
    """The json's `images`; two entries of one id or one item id, or objects of an image it lacks, stop the import."""
    images = _field(coco, "images", list, str(json_file))
    by_id, by_item = {}, {}
    for image in images:
        file_name = _field(image, "file_name", str, f"{json_file}: image {image.get('id')}")
        by_id.setdefault(image.get("id"), []).append(image)
        by_item.setdefault(_item_id(file_name), []).append(image)
    twice = sorted((i for i, listed in by_id.items() if len(listed) > 1), key=str)
    if twice:
        count = f" ({len(twice)} ids in all)" if len(twice) > 5 else ""
        raise DatasetLayoutError(f"{json_file}: image ids {twice[:5]}{count} are each listed more than once in "
                                 f"`images`; an id must name one image")
    clashes = [f"{[i['file_name'] for i in listed]} (ids {[i.get('id') for i in listed]}) give item id {item!r}"
               for item, listed in by_item.items() if len(listed) > 1]
    if clashes:
        raise DatasetLayoutError(f"{json_file}: file names " + "; ".join(clashes[:5]) + ": an image is stored by "
                                 "its item id, its file name without the extension, so each must be listed once")
    unknown = sorted(set(objects) - set(by_id), key=str)
    if unknown:
        raise DatasetLayoutError(f"{json_file}: annotations refer to image ids {unknown[:5]} that `images` "
                                 f"does not list")
    return images


def _item_id(file_name: str) -> str:
    return str(Path(file_name).with_suffix(""))


def _size(image: dict, image_file: Path) -> tuple[int, int, bool]:
    """(height, width) the annotations were drawn at, and whether the json gives it. Without a size in the
    json, the image's as viewers show it: its EXIF orientation applied."""
    height, width = image.get("height"), image.get("width")
    if isinstance(height, int) and isinstance(width, int):
        return height, width, True
    with PILImage.open(image_file) as picture:
        if picture.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            picture = ImageOps.exif_transpose(picture)
        return picture.height, picture.width, False


class CocoJsonBase(SubsetBase):
    NAME = "coco_json"

    def __init__(self, path: str, *, subset: str, annotations: dict = None, image_root=None, ctx=None):
        super().__init__(subset=subset, ctx=ctx)
        json_file, images_dir = _options(Path(path), annotations, image_root)[subset]
        try:
            coco = json.loads(json_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetLayoutError(f"{json_file}: not a json file ({error})") from None
        categories = sorted(_field(coco, "categories", list, str(json_file)), key=lambda c: c["id"])
        self._categories = {AnnotationType.label: LabelCategories.from_iterable(c["name"] for c in categories)}
        label_of = {c["id"]: index for index, c in enumerate(categories)}
        objects = {}
        for ann in _field(coco, "annotations", list, str(json_file)):
            objects.setdefault(ann.get("image_id"), []).append(ann)
        for image in _images(coco, json_file, objects):
            self._items.append(self._item(image, objects.get(image.get("id"), []), images_dir / image["file_name"],
                                          label_of, annotations[subset]))

    def _item(self, image: dict, objects: list, image_file: Path, label_of: dict, json_name: str) -> DatasetItem:
        """The image's item with one mask per usable object, or a placeholder naming why it was left out."""
        item_id = _item_id(image["file_name"])
        if not image_file.is_file():
            return skipped_item(item_id, self._subset, f"{json_name} lists {image_file}, which is missing")
        try:
            height, width, given = _size(image, image_file)
        except (OSError, SyntaxError, ValueError) as error:
            return skipped_item(item_id, self._subset, f"{image_file}: unreadable image ({error})")
        masks, skipped = [], []
        for ann in objects:
            where = f"{json_name}: annotation {ann.get('id')}"
            if ann.get("category_id") not in label_of:
                skipped.append(f"{where}: category id {ann.get('category_id')} is outside the class list")
                continue
            try:
                rle = _rle(ann.get("segmentation"), height, width, where)
            except ItemError as error:
                skipped.append(str(error))
                continue
            masks.append(Mask(image=lambda r=rle: mask_utils.decode(r).astype(bool), id=len(masks),
                              label=label_of[ann["category_id"]], attributes={"is_crowd": bool(ann.get("iscrowd", 0))}))
        # The json's size goes with the image: prepare compares it with the file's EXIF orientation.
        media = Image.from_file(path=str(image_file), size=(height, width) if given else None)
        return DatasetItem(id=item_id, subset=self._subset, annotations=masks, media=media,
                           attributes={"skipped_objects": skipped} if skipped else {})


class CocoJsonImporter(Importer):
    NAME = "coco_json"

    @classmethod
    def find_sources_with_params(cls, path, annotations: dict = None, image_root=None, **extra):
        _options(Path(path), annotations, image_root)  # says which json or folder is missing
        # One source per json; Datumaro adds the importer's options (annotations, image_root) to each.
        return [{"url": path, "format": cls.NAME, "options": {"subset": subset}} for subset in (annotations or {})]

    @classmethod
    def find_sources(cls, path):
        return []

    @classmethod
    def get_file_extensions(cls):
        return [".json"]
