"""Cityscapes instance import, as a Datumaro plugin.

Datumaro's own `cityscapes` format is semantic only: it merges every instance of a class into one
mask. This plugin reads the 16-bit `instanceIds.png` instead, where a pixel is
`labelId * 1000 + k` for instance k, and a plain `labelId` below 1000 marks a group (crowd) region of
a class that has instances.

    <root>/
      leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

Subsets are the official splits (`train`, `val`; `test` has no public labels and is not read).
macOS AppleDouble files (`._*`) are ignored; an annotation whose image is missing or unreadable is
skipped and named in the statistics.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset_base import DatasetBase, DatasetItem
from datumaro.components.importer import Importer
from datumaro.components.media import Image
from PIL import Image as PILImage

from pipelines.datasets.layout import ItemError, require, skipped_item

# The 8 classes Cityscapes evaluates instances of (label id: name). Caravan (29) and trailer (30)
# have instance ids too but are not evaluated, so they are dropped like the stuff classes.
EVALUATED_CLASSES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus", 31: "train",
                     32: "motorcycle", 33: "bicycle"}
LABELED_SPLITS = ("train", "val")
LAYOUT = __doc__.split("\n\n")[2]


def check_layout(root: Path) -> None:
    require(root, [f"{top}/{split}" for split in LABELED_SPLITS for top in ("leftImg8bit", "gtFine")], LAYOUT)


@lru_cache(maxsize=2)
def _instance_ids(path: str) -> np.ndarray:
    # One decode serves all masks of an image: they are read one after the other.
    try:
        with PILImage.open(path) as image:
            # Column-major, so that each `ids == value` mask is already in the order RLE encoding reads.
            return np.asfortranarray(np.asarray(image))
    except (OSError, SyntaxError, ValueError) as error:
        raise ItemError(f"{path}: cannot read the instance ids ({error})") from None


def _present_values(ids: np.ndarray) -> np.ndarray:
    """The distinct pixel values of an instanceIds image (a count, much faster than np.unique's sort)."""
    return np.flatnonzero(np.bincount(ids.ravel(order="K")))


class CityscapesInstancesBase(DatasetBase):
    """Both labelled splits in one source, read lazily: Datumaro keeps a single source lazy, so each
    item is made when asked for, and whoever reads its masks right after finds its instanceIds still
    decoded (`_instance_ids` keeps the last two). Two sources would be merged, reading every file first."""
    NAME = "cityscapes_instances"

    def __init__(self, path: str, *, ctx=None):
        root = Path(path)
        self._files = [(split, f) for split in LABELED_SPLITS
                       for f in sorted((root / "gtFine" / split).glob("*/*_gtFine_instanceIds.png"))
                       if not f.name.startswith("._")]
        super().__init__(length=len(self._files), subsets=sorted({split for split, _ in self._files}), ctx=ctx)
        self._root = root

    def categories(self):
        return {AnnotationType.label: LabelCategories.from_iterable(EVALUATED_CLASSES.values())}

    def __iter__(self):
        for subset, ids_file in self._files:
            yield self._item(subset, ids_file)

    def _item(self, subset: str, ids_file: Path) -> DatasetItem:
        stem = ids_file.name[: -len("_gtFine_instanceIds.png")]
        image_file = self._root / "leftImg8bit" / subset / ids_file.parent.name / f"{stem}_leftImg8bit.png"
        if not image_file.is_file():
            return skipped_item(stem, subset, f"image {image_file} is missing")
        try:
            values = _present_values(_instance_ids(str(ids_file)))
        except ItemError as error:
            return skipped_item(stem, subset, str(error))
        label_index = {label_id: i for i, label_id in enumerate(EVALUATED_CLASSES)}
        annotations = []
        for value in values:
            label_id, is_crowd = (value // 1000, False) if value >= 1000 else (value, True)
            if label_id not in label_index:
                continue
            annotations.append(Mask(
                image=lambda f=str(ids_file), v=value: _instance_ids(f) == v,
                label=label_index[label_id], id=len(annotations), attributes={"is_crowd": is_crowd}))
        return DatasetItem(id=stem, subset=subset, media=Image.from_file(path=str(image_file)),
                           annotations=annotations)


class CityscapesInstancesImporter(Importer):
    NAME = "cityscapes_instances"

    @classmethod
    def find_sources(cls, path):
        return [{"url": path, "format": cls.NAME}]

    @classmethod
    def get_file_extensions(cls):
        return [".png"]
