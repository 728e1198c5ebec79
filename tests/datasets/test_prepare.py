import json
from dataclasses import replace

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from pipelines.config import DatasetSpec
from pipelines.datasets import demo
from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import prepare
from pipelines.splits import ROLES, TEST, TRAIN, split_file

PETS = DatasetSpec(format="oxford_pets", path="pets", subsets={"trainval": "train", "test": "test"}, val_ratio=0.25,
                   test_ratio=0.2, seed=0)


@pytest.fixture(scope="module")
def pets_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    demo.make_pets(root, 24, 8, seed=1)
    return root


def test_official_test_kept_val_carved_from_train(pets_root, tmp_path):
    stats = prepare(PETS, pets_root, tmp_path / "out")
    sizes = {role: s["images"] for role, s in stats["splits"].items()}
    assert sizes == {"train": 18, "val": 6, "test": 8}
    test_names = {i["file_name"] for i in json.loads(split_file(tmp_path / "out", TEST).read_text())["images"]}
    listed = {f"images/{line.split()[0]}.jpg" for line in (pets_root / "annotations" / "test.txt").read_text().splitlines()}
    assert test_names == listed
    # Every split stays balanced between the two classes.
    assert stats["splits"]["val"]["instances"] == {"cat": 3, "dog": 3}


def test_subsample_halves_train_keeps_test(pets_root, tmp_path):
    stats = prepare(replace(PETS, subsample=0.5), pets_root, tmp_path / "half")
    sizes = {role: s["images"] for role, s in stats["splits"].items()}
    assert sizes["train"] + sizes["val"] == 12 and sizes["test"] == 8


def test_same_params_give_identical_files(pets_root, tmp_path):
    prepare(replace(PETS, subsample=0.5), pets_root, tmp_path / "a")
    prepare(replace(PETS, subsample=0.5), pets_root, tmp_path / "b")
    for role in ROLES:
        assert split_file(tmp_path / "a", role).read_bytes() == split_file(tmp_path / "b", role).read_bytes()


def test_coco_annotations_are_pycocotools_ready(pets_root, tmp_path):
    stats = prepare(PETS, pets_root, tmp_path / "out")
    coco = json.loads(split_file(tmp_path / "out", TRAIN).read_text())
    # The statistics hold every object's area with its image's size, as the json has them (no crowd in Pets).
    sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    assert sorted(stats["splits"]["train"]["object_sizes"]) == sorted(
        [int(a["area"]), *sizes[a["image_id"]]] for a in coco["annotations"])
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    image = coco["images"][0]
    ann = next(a for a in coco["annotations"] if a["image_id"] == image["id"])
    assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
    mask = mask_utils.decode(ann["segmentation"])
    assert mask.shape == (image["height"], image["width"]) and ann["area"] == mask.sum()
    ys, xs = np.nonzero(mask)
    # The box is the mask's, not the head box of the xmls.
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_crowd_regions_exported_as_iscrowd(tmp_path):
    demo.make_cityscapes(tmp_path / "cs", 30, 10, seed=3)
    stats = prepare(DatasetSpec("cityscapes_instances", "cs", {"train": "train", "val": "test"}), tmp_path / "cs",
                    tmp_path / "out")
    crowd = sum(sum(s["crowd_regions"].values()) for s in stats["splits"].values())
    coco = [json.loads(split_file(tmp_path / "out", r).read_text()) for r in ROLES]
    assert crowd > 0
    assert sum(a["iscrowd"] for c in coco for a in c["annotations"]) == crowd


def test_no_test_subset_is_split_off(pets_root, tmp_path):
    stats = prepare(replace(PETS, subsets={"trainval": "train"}), pets_root, tmp_path / "out")
    sizes = {role: s["images"] for role, s in stats["splits"].items()}
    assert sum(sizes.values()) == 24 and all(sizes.values())


def test_missing_root_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"(?s)nowhere does not exist.*expected:.*images/<Breed_Name>"):
        prepare(PETS, tmp_path / "nowhere", tmp_path / "out")


def test_a_datumaro_format_needs_only_a_params_entry(pets_root, tmp_path):
    """Datumaro's own coco_instances layout (annotations/instances_<subset>.json, images/<subset>/):
    the same objects come out as through the Pets importer, each polygon-split object merged back."""
    from pipelines.datasets.prepare import import_dataset
    import_dataset("oxford_pets", pets_root, {}).export(str(tmp_path / "coco"), "coco_instances", save_media=True)
    ours = prepare(PETS, pets_root, tmp_path / "a")
    theirs = prepare(replace(PETS, format="coco_instances"), tmp_path / "coco", tmp_path / "b")
    for role in ("train", "val", "test"):
        assert theirs["splits"][role]["images"] == ours["splits"][role]["images"]
        assert theirs["splits"][role]["instances"] == ours["splits"][role]["instances"]
        assert not theirs["splits"][role]["skipped_objects"]
    a, b = (json.loads(split_file(tmp_path / d, TEST).read_text()) for d in ("a", "b"))
    # Polygons traced from the masks: areas agree to within the outline.
    for x, y in zip(sorted(a["annotations"], key=lambda r: r["image_id"]),
                    sorted(b["annotations"], key=lambda r: r["image_id"])):
        assert y["area"] == pytest.approx(x["area"], rel=0.05)
