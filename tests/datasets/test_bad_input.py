"""What real archives hold besides clean data: each case is converted, or skipped and named, or stops
with a message naming the file. Fixtures are in the owners' layouts (pipelines/datasets/demo.py)."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from pipelines.datasets import demo
from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import prepare

PETS = dict(format="oxford_pets", options={}, subsets={"trainval": "train", "test": "test"}, subsample=1.0,
            val_ratio=0.25, test_ratio=0.2, seed=0)


def reasons(stats: dict, key: str) -> dict:
    """image -> reason: for `skipped_images`, or over all splits for `converted` or `skipped_objects`."""
    if key == "skipped_images":
        return {entry["image"]: entry["reason"] for entry in stats[key]}
    return {entry["image"]: entry["reason"] for split in stats["splits"].values() for entry in split[key]}


def image_files(out_dir, name: str) -> list:
    return sorted(p.name for p in (out_dir / "images").glob(f"{name}.*"))


@pytest.fixture
def messy_pets(tmp_path):
    root = tmp_path / "pets"
    demo.make_pets(root, 16, 8, seed=2)
    images, trimaps = root / "images", root / "annotations" / "trimaps"
    rgb = lambda name: Image.open(images / f"{name}.jpg").convert("RGB")  # noqa: E731
    rgb("Abyssinian_1").convert("L").save(images / "Abyssinian_1.jpg")            # grayscale
    rgb("beagle_1").convert("CMYK").save(images / "beagle_1.jpg")                 # CMYK JPEG
    rgb("Bengal_1").save(images / "Bengal_1.jpg", format="PNG")                   # PNG data, .jpg name
    rgb("pug_1").convert("RGBA").save(images / "pug_1.jpg", format="PNG")         # RGBA PNG, .jpg name
    data = (images / "Abyssinian_2.jpg").read_bytes()
    (images / "Abyssinian_2.jpg").write_bytes(data[: len(data) // 2])           # truncated
    (images / "beagle_2.jpg").write_bytes(b"not an image at all")               # corrupt
    (trimaps / "Bengal_2.png").unlink()                                         # no trimap
    (trimaps / "._pug_2.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")      # macOS metadata beside
    (images / "._pug_2.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    trimap = np.asarray(Image.open(trimaps / "pug_3.png"))
    Image.fromarray(trimap[:-10]).save(trimaps / "pug_3.png")                   # mask of another size
    empty = np.full_like(np.asarray(Image.open(trimaps / "beagle_3.png")), 2)
    Image.fromarray(empty).save(trimaps / "beagle_3.png")                       # an empty mask (no pet pixel)
    listing = root / "annotations" / "trainval.txt"
    listing.write_text(listing.read_text().replace("Bengal_3 6 1", "Bengal_3 6 3"))  # species 3: no such class
    return root


def test_messy_pets_are_converted_or_skipped_by_name(messy_pets, tmp_path):
    out = tmp_path / "out"
    stats = prepare(root=messy_pets, out_dir=out, **PETS)
    converted = reasons(stats, "converted")
    assert converted == {"Abyssinian_1": "L image", "beagle_1": "CMYK image", "Bengal_1": "PNG data under a .jpg name",
                         "pug_1": "PNG data under a .jpg name"}
    for name in converted:  # stored as RGB PNGs under their own extension
        assert image_files(out, name) == [f"{name}.png"]
        assert Image.open(out / "images" / f"{name}.png").mode == "RGB"
    skipped = reasons(stats, "skipped_images")
    assert set(skipped) == {"Abyssinian_2", "beagle_2", "pug_3", "Bengal_2", "Bengal_3"}
    assert "Abyssinian_2.jpg: unreadable image (image file is truncated" in skipped["Abyssinian_2"]
    assert "beagle_2.jpg: unreadable image (cannot identify image file" in skipped["beagle_2"]
    width, height = Image.open(messy_pets / "images" / "pug_3.jpg").size
    assert skipped["pug_3"] == f"a mask of {height - 10} x {width} on an image of {height} x {width}"
    assert skipped["Bengal_2"].endswith("trimaps/Bengal_2.png is missing")
    assert skipped["Bengal_3"] == "trainval.txt: species 3 is outside the class list"
    assert reasons(stats, "skipped_objects") == {"beagle_3": "an empty mask"}
    # The image whose only object was empty stays, as an image without objects; nothing else is lost.
    assert sum(s["images_without_objects"] for s in stats["splits"].values()) == 1
    assert sum(s["images"] for s in stats["splits"].values()) == 24 - 2 - 3
    assert not list((out / "images").glob("._*"))
    # Left out before the split: every split keeps its share.
    assert {role: s["images"] for role, s in stats["splits"].items()} == {"train": 9, "val": 2, "test": 8}
    # What the split files list is exactly what was kept.
    listed = {img["file_name"] for role in ("train", "val", "test")
              for img in json.loads((out / f"{role}.json").read_text())["images"]}
    assert listed == {f"images/{p.name}" for p in (out / "images").iterdir()}


def test_wgisd_masks_that_disagree_with_boxes_skip_the_image(tmp_path):
    root = tmp_path / "wgisd"
    demo.make_wgisd(root, 8, 4, seed=0)
    first = (root / "train_masked.txt").read_text().split()[0]
    second = (root / "train_masked.txt").read_text().split()[1]
    (root / "data" / f"{first}.txt").write_text((root / "data" / f"{first}.txt").read_text() + "0 0.5 0.5 0.1 0.1\n")
    (root / "data" / f"{second}.npz").unlink()
    stats = prepare("wgisd", root, tmp_path / "out", {}, {"train": "train", "test": "test"}, 1.0, 0.2, 0.2, 0)
    skipped = reasons(stats, "skipped_images")
    assert sorted(skipped) == sorted([first, second])
    assert "holds masks of shape" in skipped[first] and "one mask per box line" in skipped[first]
    assert skipped[second].endswith(f"data/{second}.npz is missing")


def test_cityscapes_ignores_appledouble_and_names_a_missing_image(tmp_path):
    root = tmp_path / "cs"
    demo.make_cityscapes(root, 6, 3, seed=0)
    city = root / "gtFine" / "train" / "aachen"
    (city / "._aachen_000000_000000_gtFine_instanceIds.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000001_leftImg8bit.png").unlink()
    truncated = root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000002_leftImg8bit.png"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    stats = prepare("cityscapes_instances", root, tmp_path / "out", {}, {"train": "train", "val": "test"},
                    1.0, 0.2, 0.2, 0)
    skipped = reasons(stats, "skipped_images")
    assert list(skipped) == ["aachen_000000_000001", "aachen_000000_000002"]
    assert "aachen_000000_000001_leftImg8bit.png is missing" in skipped["aachen_000000_000001"]
    assert "aachen_000000_000002_leftImg8bit.png: unreadable image" in skipped["aachen_000000_000002"]
    assert sum(s["images"] for s in stats["splits"].values()) == 7


@pytest.fixture
def user_coco(tmp_path):
    """COCO the way users have it: jsons under their own names, images elsewhere, 0-based category ids."""
    root = tmp_path / "mine"
    (root / "photos").mkdir(parents=True)
    (root / "labels").mkdir()
    box = np.zeros((40, 60), np.uint8)
    box[5:20, 10:30] = 1
    compressed = mask_utils.encode(np.asfortranarray(box))
    for split, count in (("train", 8), ("test", 4)):
        images, annotations = [], []
        for i in range(count):
            name = f"{split}_{i}.jpg"
            Image.fromarray(np.full((40, 60, 3), 90 + i, np.uint8)).save(root / "photos" / name)
            images.append({"id": 100 + i, "file_name": name, "height": 40, "width": 60})
            objects = [
                {"category_id": i % 2, "iscrowd": 0,   # two polygon parts: one object
                 "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20], [40, 25, 50, 25, 50, 35]]},
                {"category_id": 1, "iscrowd": 1,       # a crowd region as compressed RLE
                 "segmentation": {"size": [40, 60], "counts": compressed["counts"].decode()}},
                {"category_id": 0, "iscrowd": 0,       # uncompressed RLE
                 "segmentation": {"size": [40, 60], "counts": [2000, 100, 300]}},
            ]
            if i == 0:
                objects += [{"category_id": 5, "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]},  # unknown class
                            {"category_id": 0, "iscrowd": 0, "segmentation": []}]                  # box only
            for obj in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "bbox": [0, 0, 1, 1],
                                    "area": 1, **obj})
        if split == "train":
            images.append({"id": 999, "file_name": "gone.jpg", "height": 40, "width": 60})
        (root / "labels" / f"{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": 0, "name": "leaf"}, {"id": 1, "name": "fruit"}]}))
    return root


COCO_OPTIONS = {"annotations": {"train": "labels/train.json", "test": "labels/test.json"}, "image_root": "photos"}


def test_user_coco_json_anywhere_with_zero_based_ids(user_coco, tmp_path):
    out = tmp_path / "out"
    stats = prepare("coco_json", user_coco, out, COCO_OPTIONS, {"train": "train", "test": "test"}, 1.0, 0.25, 0.2, 0)
    assert stats["labels"] == ["leaf", "fruit"]
    test = json.loads((out / "test.json").read_text())
    assert len(test["images"]) == 4
    assert [c["id"] for c in test["categories"]] == [1, 2]
    first = next(i["id"] for i in test["images"] if i["file_name"] == "images/test_0.jpg")
    anns = [a for a in test["annotations"] if a["image_id"] == first]
    # Polygons with two parts: one object; leaf (id 0 in the json) is category 1 here.
    polygon = anns[0]
    assert polygon["category_id"] == 1 and polygon["iscrowd"] == 0
    assert polygon["area"] == pytest.approx(20 * 15 + 50, abs=30)
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]
    assert anns[1]["category_id"] == 2 and anns[1]["area"] == 300
    assert anns[2]["area"] == 100
    objects = reasons(stats, "skipped_objects")
    assert set(objects) == {"test_0", "train_0"}
    skipped = [e["reason"] for split in stats["splits"].values() for e in split["skipped_objects"]]
    assert "labels/test.json: annotation 4: category id 5 is outside the class list" in skipped
    assert "labels/test.json: annotation 5: no mask (a box only)" in skipped
    assert list(reasons(stats, "skipped_images")) == ["gone"]
    assert stats["skipped_images"][0]["reason"].endswith("photos/gone.jpg, which is missing")


def test_user_coco_missing_json_is_named(user_coco, tmp_path):
    options = {**COCO_OPTIONS, "annotations": {"train": "labels/training.json"}}
    with pytest.raises(DatasetLayoutError, match="labels/training.json is missing"):
        prepare("coco_json", user_coco, tmp_path / "out", options, {"train": "train"}, 1.0, 0.25, 0.2, 0)


def test_user_coco_broken_json_is_named(user_coco, tmp_path):
    (user_coco / "labels" / "test.json").write_text('{"images": [')
    with pytest.raises(DatasetLayoutError, match="labels/test.json: not a json file"):
        prepare("coco_json", user_coco, tmp_path / "out", COCO_OPTIONS, {"train": "train", "test": "test"},
                1.0, 0.25, 0.2, 0)


def test_a_subset_that_loses_every_image_says_why_with_examples(user_coco, tmp_path):
    options = {**COCO_OPTIONS, "image_root": "labels"}  # a folder that exists, but holds no images
    with pytest.raises(DatasetLayoutError) as error:
        prepare("coco_json", user_coco, tmp_path / "out", options, {"train": "train", "test": "test"},
                1.0, 0.25, 0.2, 0)
    lines = str(error.value).splitlines()
    assert lines[0] == "all 9 images of subset 'train' were left out:"
    assert lines[1].startswith("    9 x <file> lists <file>, which is missing, e.g. labels/train.json lists ")
    assert lines[1].endswith("labels/train_0.jpg, which is missing")


def test_a_subset_that_loses_most_images_is_warned_about(user_coco, tmp_path, capsys):
    for name in ("train_0.jpg", "train_1.jpg", "train_2.jpg", "train_3.jpg", "train_4.jpg"):
        (user_coco / "photos" / name).write_bytes(b"not an image")
    prepare("coco_json", user_coco, tmp_path / "out", COCO_OPTIONS, {"train": "train", "test": "test"},
            1.0, 0.25, 0.2, 0)
    printed = capsys.readouterr().out
    assert "warning: 6 of 9 images of subset 'train' were left out:\n    5 x <file>: unreadable image" in printed
    assert "1 x <file> lists <file>, which is missing, e.g. labels/train.json lists " in printed
