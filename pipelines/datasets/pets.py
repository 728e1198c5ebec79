"""Oxford-IIIT Pets import, as a Datumaro plugin.

    <root>/
      images/<Breed_Name>_<n>.jpg
      annotations/trimaps/<Breed_Name>_<n>.png   (1 pet, 2 background, 3 border)
      annotations/trainval.txt, annotations/test.txt   (<image> <class id> <species 1 cat, 2 dog> <breed id>)

The instance mask comes from the trimap; the border band (value 3) lies on the pet's outline and
counts as pet unless `border_is_pet` is false. The box is left to be taken from the mask: the VOC
boxes in annotations/xmls frame the head only. Classes are `cat`/`dog` or, with `breeds`, the 37
breeds. Subsets are the official lists `trainval` and `test`. A listed image without its jpg or
trimap, or with a class id outside the list's classes, is skipped and named in the statistics.
"""

from pathlib import Path

import numpy as np
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset_base import DatasetItem, SubsetBase
from datumaro.components.importer import Importer
from datumaro.components.media import Image
from PIL import Image as PILImage

from pipelines.datasets.layout import DatasetLayoutError, ItemError, require, skipped_item

SPLIT_LISTS = ("trainval", "test")
LAYOUT = __doc__.split("\n\n")[1]


def check_layout(root: Path) -> None:
    require(root, ["images", "annotations/trimaps"] + [f"annotations/{s}.txt" for s in SPLIT_LISTS], LAYOUT)


def read_list(path: Path) -> list[tuple[str, int, int]]:
    """(image name, class id, species) for each non-comment line of a Pets list file."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            raise DatasetLayoutError(f"{path}:{number}: expected '<image> <class id> <species> <breed id>', got {line!r}")
        rows.append((fields[0], int(fields[1]), int(fields[2])))
    return rows


def _trimap_mask(path: str, border_is_pet: bool) -> np.ndarray:
    try:
        with PILImage.open(path) as image:
            trimap = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ItemError(f"{path}: cannot read the trimap ({error})") from None
    if trimap.ndim != 2:
        raise ItemError(f"{path}: a trimap has one channel, this one has shape {trimap.shape}")
    return (trimap == 1) | (trimap == 3) if border_is_pet else trimap == 1


class OxfordPetsBase(SubsetBase):
    NAME = "oxford_pets"

    def __init__(self, path: str, *, subset: str, breeds: bool = False, border_is_pet: bool = True, ctx=None):
        super().__init__(subset=subset, ctx=ctx)
        root = Path(path)
        rows = read_list(root / "annotations" / f"{subset}.txt")
        if breeds:
            # A breed's name is its image names without the trailing number; class ids run 1..37.
            names = {class_id: name.rsplit("_", 1)[0] for name, class_id, _ in read_list(root / "annotations" / "list.txt")}
            labels = [names[i] for i in sorted(names)]
        else:
            labels = ["cat", "dog"]
        self._categories = {AnnotationType.label: LabelCategories.from_iterable(labels)}
        for name, class_id, species in rows:
            trimap, image = root / "annotations" / "trimaps" / f"{name}.png", root / "images" / f"{name}.jpg"
            if breeds and class_id not in names or not breeds and species not in (1, 2):
                value = f"class id {class_id}" if breeds else f"species {species}"
                self._items.append(skipped_item(name, subset, f"{subset}.txt: {value} is outside the class list"))
                continue
            missing = [p for p in (image, trimap) if not p.is_file()]
            if missing:
                self._items.append(skipped_item(name, subset, f"listed in {subset}.txt but {missing[0]} is missing"))
                continue
            label = labels.index(names[class_id]) if breeds else species - 1
            mask = Mask(image=lambda p=str(trimap): _trimap_mask(p, border_is_pet), label=label, id=0,
                        attributes={"is_crowd": False})
            self._items.append(DatasetItem(id=name, subset=subset, annotations=[mask],
                                           media=Image.from_file(path=str(image))))


class OxfordPetsImporter(Importer):
    NAME = "oxford_pets"

    @classmethod
    def find_sources(cls, path):
        return [{"url": path, "format": cls.NAME, "options": {"subset": split}}
                for split in SPLIT_LISTS if (Path(path) / "annotations" / f"{split}.txt").is_file()]

    @classmethod
    def get_file_extensions(cls):
        return [".txt"]
