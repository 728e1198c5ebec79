import re

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import import_dataset


@pytest.fixture
def pets(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    rows = {"Abyssinian_1": "1 1 1", "beagle_2": "3 2 1", "Bengal_3": "6 1 2"}
    for name in rows:
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
        trimap = np.full((10, 12), 2, np.uint8)
        trimap[2:6, 2:6] = 1      # 16 px pet
        trimap[6, 2:6] = 3        # 4 px border
        Image.fromarray(trimap).save(tmp_path / "annotations" / "trimaps" / f"{name}.png")
    # An AppleDouble file as macOS leaves them beside the trimaps: not an annotation.
    (tmp_path / "annotations" / "trimaps" / "._Abyssinian_1.png").write_bytes(b"\0\5\26\7")
    lines = [f"{n} {r}" for n, r in rows.items()]
    (tmp_path / "annotations" / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(lines) + "\n")
    (tmp_path / "annotations" / "trainval.txt").write_text("\n".join(lines[:2]) + "\n")
    (tmp_path / "annotations" / "test.txt").write_text(lines[2] + "\n")
    return tmp_path


def test_species_classes_and_mask_from_trimap(pets):
    dataset = import_dataset("oxford_pets", pets, {})
    labels = [c.name for c in dataset.categories()[1]]
    assert labels == ["cat", "dog"]
    got = {(i.id, i.subset): (labels[a.label], int(a.image.sum())) for i in dataset for a in i.annotations}
    assert got == {("Abyssinian_1", "trainval"): ("cat", 20), ("beagle_2", "trainval"): ("dog", 20),
                   ("Bengal_3", "test"): ("cat", 20)}


def test_border_can_count_as_background(pets):
    dataset = import_dataset("oxford_pets", pets, {"border_is_pet": False})
    assert {int(a.image.sum()) for i in dataset for a in i.annotations} == {16}


def test_breeds_as_classes(pets):
    dataset = import_dataset("oxford_pets", pets, {"breeds": True})
    labels = [c.name for c in dataset.categories()[1]]
    assert labels == ["Abyssinian", "beagle", "Bengal"]
    assert labels[dataset.get("Bengal_3", "test").annotations[0].label] == "Bengal"


def test_missing_list_names_file(pets):
    (pets / "annotations" / "test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="annotations/test.txt is missing"):
        import_dataset("oxford_pets", pets, {})


def test_missing_trimap_skips_the_image_and_names_it(pets):
    (pets / "annotations" / "trimaps" / "beagle_2.png").unlink()
    item = import_dataset("oxford_pets", pets, {}).get("beagle_2", "trainval")
    assert not item.annotations
    assert re.fullmatch(r"listed in trainval.txt but .*trimaps/beagle_2.png is missing", item.attributes["skipped"])
