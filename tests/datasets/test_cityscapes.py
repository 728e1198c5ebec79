import numpy as np
import pytest
from PIL import Image

from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import import_dataset


def write_frame(root, split, stem, ids):
    city = stem.split("_")[0]
    (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
    (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(ids.shape + (3,), np.uint8)).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
    Image.fromarray(ids.astype(np.uint16)).save(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png")


@pytest.fixture
def cityscapes(tmp_path):
    ids = np.full((20, 40), 7, np.uint16)          # road
    ids[0:5, 0:5] = 24000                          # person instance 0: 25 px
    ids[0:5, 10:14] = 24001                        # person instance 1: 20 px
    ids[10:20, 0:10] = 26000                       # car: 100 px
    ids[10:12, 20:30] = 24                         # a group of persons without ids: crowd, 20 px
    ids[15:20, 30:40] = 29000                      # caravan: has ids but is not evaluated
    ids[0:3, 30:40] = 30                           # trailer group: not evaluated either
    write_frame(tmp_path, "train", "aachen_000000_000001", ids)
    write_frame(tmp_path, "val", "frankfurt_000000_000002", np.full((20, 40), 26001, np.uint16))
    return tmp_path


def test_instances_crowd_and_dropped_classes(cityscapes):
    dataset = import_dataset("cityscapes_instances", cityscapes, {})
    labels = [c.name for c in dataset.categories()[1]]
    assert labels == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    item = dataset.get("aachen_000000_000001", "train")
    found = sorted((labels[a.label], int(a.image.sum()), a.attributes["is_crowd"]) for a in item.annotations)
    assert found == [("car", 100, False), ("person", 20, False), ("person", 20, True), ("person", 25, False)]


def test_official_splits_are_subsets(cityscapes):
    dataset = import_dataset("cityscapes_instances", cityscapes, {})
    assert sorted(dataset.subsets()) == ["train", "val"]
    val = dataset.get("frankfurt_000000_000002", "val")
    assert [int(a.image.sum()) for a in val.annotations] == [800]


def test_missing_folder_names_path(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="gtFine/train is missing"):
        import_dataset("cityscapes_instances", tmp_path, {})
