"""WGISD (Embrapa Wine Grape Instance Segmentation Dataset) import, as a Datumaro plugin.

    <root>/
      data/<VARIETY>_<n>.jpg, data/<VARIETY>_<n>.txt (YOLO boxes), data/<VARIETY>_<n>.npz (arr_0: H x W x n)
      train_masked.txt, test_masked.txt   (image names without extension)

Only the masked images serve instance segmentation: mask i of the npz belongs to box line i of the
txt. Classes: one `grape` class, or with `by_variety` the image's variety from its name prefix.
Subsets are the official lists `train` and `test`. A listed image whose jpg, txt or npz is missing,
or whose npz does not hold one mask per box line, is skipped and named in the statistics.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset_base import DatasetItem, SubsetBase
from datumaro.components.importer import Importer
from datumaro.components.media import Image

from pipelines.datasets.layout import ItemError, require, skipped_item

VARIETIES = {"CDY": "Chardonnay", "CFR": "Cabernet Franc", "CSV": "Cabernet Sauvignon",
             "SVB": "Sauvignon Blanc", "SYH": "Syrah"}
SPLITS = ("train", "test")
LAYOUT = __doc__.split("\n\n")[1]


def check_layout(root: Path) -> None:
    require(root, ["data"] + [f"{split}_masked.txt" for split in SPLITS], LAYOUT)


@lru_cache(maxsize=2)
def _masks(path: Path, box_lines: int) -> np.ndarray:
    """The H x W x n mask stack of one image, checked against its box count (one decode per image)."""
    try:
        with np.load(path) as npz:
            masks = npz["arr_0"]
    except (OSError, ValueError, KeyError) as error:
        raise ItemError(f"{path}: cannot read the masks ({error})") from None
    if masks.ndim != 3 or masks.shape[2] != box_lines:
        raise ItemError(f"{path}: holds masks of shape {masks.shape}, expected H x W x {box_lines} "
                                 f"(one mask per box line of {path.with_suffix('.txt').name})")
    return masks


class WgisdBase(SubsetBase):
    NAME = "wgisd"

    def __init__(self, path: str, *, subset: str, by_variety: bool = False, ctx=None):
        super().__init__(subset=subset, ctx=ctx)
        root = Path(path)
        labels = list(VARIETIES.values()) if by_variety else ["grape"]
        self._categories = {AnnotationType.label: LabelCategories.from_iterable(labels)}
        for name in (root / f"{subset}_masked.txt").read_text().split():
            prefix = name.split("_")[0]
            if by_variety and prefix not in VARIETIES:
                reason = f"{subset}_masked.txt: no known variety prefix ({', '.join(VARIETIES)}): outside the class list"
                self._items.append(skipped_item(name, subset, reason))
                continue
            label = list(VARIETIES).index(prefix) if by_variety else 0
            npz, boxes = root / "data" / f"{name}.npz", root / "data" / f"{name}.txt"
            missing = [p for p in (root / "data" / f"{name}.jpg", boxes, npz) if not p.is_file()]
            if missing:
                self._items.append(skipped_item(name, subset, f"listed in {subset}_masked.txt but {missing[0]} is missing"))
                continue
            count = len([line for line in boxes.read_text().splitlines() if line.strip()])
            annotations = [Mask(image=lambda p=npz, n=count, i=i: _masks(p, n)[:, :, i].astype(bool), label=label,
                                id=i, attributes={"is_crowd": False}) for i in range(count)]
            self._items.append(DatasetItem(id=name, subset=subset, annotations=annotations,
                                           media=Image.from_file(path=str(root / "data" / f"{name}.jpg"))))


class WgisdImporter(Importer):
    NAME = "wgisd"

    @classmethod
    def find_sources(cls, path):
        return [{"url": path, "format": cls.NAME, "options": {"subset": split}}
                for split in SPLITS if (Path(path) / f"{split}_masked.txt").is_file()]

    @classmethod
    def get_file_extensions(cls):
        return [".txt"]
