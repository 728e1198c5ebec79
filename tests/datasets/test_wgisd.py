import numpy as np
import pytest
from PIL import Image

from pipelines.datasets.prepare import import_dataset


def write_image(root, name, masks):
    h, w, n = masks.shape
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "data" / f"{name}.jpg")
    (root / "data" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n" * n)
    np.savez_compressed(root / "data" / f"{name}.npz", masks)


@pytest.fixture
def wgisd(tmp_path):
    (tmp_path / "data").mkdir()
    masks = np.zeros((8, 10, 2), np.uint8)
    masks[0:2, 0:2, 0] = 1   # 4 px
    masks[4:8, 4:8, 1] = 1   # 16 px
    write_image(tmp_path, "CDY_2015", masks)
    write_image(tmp_path, "SYH_2017", masks[:, :, :1])
    # Boxes only, no masks: listed in train.txt but not in train_masked.txt.
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "data" / "CSV_1.jpg")
    (tmp_path / "data" / "CSV_1.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "train.txt").write_text("CDY_2015\nCSV_1\n")
    (tmp_path / "train_masked.txt").write_text("CDY_2015\n")
    (tmp_path / "test.txt").write_text("SYH_2017\n")
    (tmp_path / "test_masked.txt").write_text("SYH_2017\n")
    return tmp_path


def test_masked_images_only_one_class(wgisd):
    dataset = import_dataset("wgisd", wgisd, {})
    assert [c.name for c in dataset.categories()[1]] == ["grape"]
    assert sorted((i.id, i.subset) for i in dataset) == [("CDY_2015", "train"), ("SYH_2017", "test")]
    assert [int(a.image.sum()) for a in dataset.get("CDY_2015", "train").annotations] == [4, 16]


def test_variety_classes(wgisd):
    dataset = import_dataset("wgisd", wgisd, {"by_variety": True})
    labels = [c.name for c in dataset.categories()[1]]
    assert len(labels) == 5
    assert {labels[a.label] for a in dataset.get("CDY_2015", "train").annotations} == {"Chardonnay"}
    assert {labels[a.label] for a in dataset.get("SYH_2017", "test").annotations} == {"Syrah"}


def test_mask_and_box_counts_must_agree(wgisd):
    (wgisd / "data" / "CDY_2015.txt").write_text("0 0.5 0.5 0.2 0.2\n" * 3)
    dataset = import_dataset("wgisd", wgisd, {})
    with pytest.raises(Exception, match=r"CDY_2015.npz: holds masks of shape \(8, 10, 2\), expected H x W x 3"):
        [a.image for a in dataset.get("CDY_2015", "train").annotations]
