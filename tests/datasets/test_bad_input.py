"""What real archives hold besides clean data: each case is converted, or skipped and named, or stops
with a message naming the file. Fixtures are in the owners' layouts (pipelines/datasets/demo.py)."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from pipelines.config import DatasetSpec
from pipelines.datasets import demo
from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import prepare
from pipelines.inference import load_image
from pipelines.report import tables
from pipelines.splits import ROLES, TEST, split_file

PETS = DatasetSpec(format="oxford_pets", path="pets", subsets={"trainval": "train", "test": "test"}, val_ratio=0.25)


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
    stats = prepare(PETS, messy_pets, out)
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
    listed = {img["file_name"] for role in ROLES
              for img in json.loads(split_file(out, role).read_text())["images"]}
    assert listed == {f"images/{p.name}" for p in (out / "images").iterdir()}


def test_wgisd_masks_that_disagree_with_boxes_skip_the_image(tmp_path):
    root = tmp_path / "wgisd"
    demo.make_wgisd(root, 8, 4, seed=0)
    first = (root / "train_masked.txt").read_text().split()[0]
    second = (root / "train_masked.txt").read_text().split()[1]
    (root / "data" / f"{first}.txt").write_text((root / "data" / f"{first}.txt").read_text() + "0 0.5 0.5 0.1 0.1\n")
    (root / "data" / f"{second}.npz").unlink()
    stats = prepare(DatasetSpec("wgisd", root.name, {"train": "train", "test": "test"}), root, tmp_path / "out")
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
    stats = prepare(DatasetSpec("cityscapes_instances", root.name, {"train": "train", "val": "test"}), root,
                    tmp_path / "out")
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


USER_COCO = DatasetSpec("coco_json", "user_coco", {"train": "train", "test": "test"},
                        options={"annotations": {"train": "labels/train.json", "test": "labels/test.json"},
                                 "image_root": "photos"},
                        val_ratio=0.25)


def test_user_coco_json_anywhere_with_zero_based_ids(user_coco, tmp_path):
    out = tmp_path / "out"
    stats = prepare(USER_COCO, user_coco, out)
    assert stats["labels"] == ["leaf", "fruit"]
    test = json.loads(split_file(out, TEST).read_text())
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
    options = {**USER_COCO.options, "annotations": {"train": "labels/training.json"}}
    with pytest.raises(DatasetLayoutError, match="labels/training.json is missing"):
        prepare(replace(USER_COCO, subsets={"train": "train"}, options=options), user_coco, tmp_path / "out")


def test_user_coco_broken_json_is_named(user_coco, tmp_path):
    (user_coco / "labels" / "test.json").write_text('{"images": [')
    with pytest.raises(DatasetLayoutError, match="labels/test.json: not a json file"):
        prepare(USER_COCO, user_coco, tmp_path / "out")


def test_a_subset_that_loses_every_image_says_why_with_examples(user_coco, tmp_path):
    options = {**USER_COCO.options, "image_root": "labels"}  # a folder that exists, but holds no images
    with pytest.raises(DatasetLayoutError) as error:
        prepare(replace(USER_COCO, options=options), user_coco, tmp_path / "out")
    lines = str(error.value).splitlines()
    assert lines[0] == "all 9 images of subset 'train' were left out:"
    assert lines[1].startswith("    9 x <file> lists <file>, which is missing, e.g. labels/train.json lists ")
    assert lines[1].endswith("labels/train_0.jpg, which is missing")


def test_a_subset_that_loses_most_images_is_warned_about(user_coco, tmp_path, capsys):
    for name in ("train_0.jpg", "train_1.jpg", "train_2.jpg", "train_3.jpg", "train_4.jpg"):
        (user_coco / "photos" / name).write_bytes(b"not an image")
    prepare(USER_COCO, user_coco, tmp_path / "out")
    printed = capsys.readouterr().out
    assert "warning: 6 of 9 images of subset 'train' were left out:\n    5 x <file>: unreadable image" in printed
    assert "1 x <file> lists <file>, which is missing, e.g. labels/train.json lists " in printed


# What a user's own data does to the numbers when nothing stops it: each case is refused or recorded.

DEMO_COCO = DatasetSpec("coco_json", "coco", {"train": "train", "test": "test"},
                        options={"annotations": {"train": "labels/train.json", "test": "labels/test.json"},
                                 "image_root": "photos"},
                        val_ratio=0.25)


@pytest.fixture
def demo_coco(tmp_path):
    root = tmp_path / "coco"
    demo.make_coco_json(root, 8, 4, seed=0)
    return root


def edit_json(path, change) -> None:
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def prepared(out) -> dict:
    """file name -> (image record, its annotations) over all prepared splits."""
    found = {}
    for role in ROLES:
        coco = json.loads(split_file(out, role).read_text())
        for image in coco["images"]:
            found[image["file_name"]] = (image, [a for a in coco["annotations"] if a["image_id"] == image["id"]])
    return found


def union(segmentations, height, width) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for segmentation in segmentations:
        if isinstance(segmentation, list):
            segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        mask |= mask_utils.decode(segmentation).astype(bool)
    return mask


def test_coco_json_with_two_images_of_one_id_is_refused(demo_coco, tmp_path):
    train = demo_coco / "labels" / "train.json"
    edit_json(train, lambda coco: coco["images"][3].update(id=coco["images"][1]["id"]))
    with pytest.raises(DatasetLayoutError) as error:
        prepare(DEMO_COCO, demo_coco, tmp_path / "out")
    assert str(error.value) == (f"{train}: image ids [1] are each listed more than once in `images`; "
                                "an id must name one image")
    # One file under two ids, or two files of one name but for the extension, would be stored as one image.
    edit_json(train, lambda coco: coco["images"][3].update(id=3, file_name="train_0001.png"))
    with pytest.raises(DatasetLayoutError) as error:
        prepare(DEMO_COCO, demo_coco, tmp_path / "out")
    assert str(error.value).startswith(f"{train}: file names ['train_0001.jpg', 'train_0001.png'] (ids [1, 3]) "
                                       "give item id 'train_0001': ")
    assert not (tmp_path / "out").exists()


def test_an_image_in_two_roles_is_refused_and_one_in_two_subsets_of_a_role_kept_once(tmp_path):
    root = tmp_path / "pets"
    demo.make_pets(root, 12, 4, seed=0)
    trainval, test = root / "annotations" / "trainval.txt", root / "annotations" / "test.txt"
    first = trainval.read_text().splitlines()[0]
    test.write_text(test.read_text() + first + "\n")  # listed in both official lists
    name = first.split()[0]
    with pytest.raises(DatasetLayoutError) as error:
        prepare(PETS, root, tmp_path / "out")
    assert str(error.value) == (
        "an image must be in one role only, and an item id name one file:\n"
        f"    {(root / 'images' / f'{name}.jpg').resolve()} is in subsets 'test' (test) and 'trainval' (train): "
        "the same image would be in train and test")
    # Both lists used for training: the image is trained on once, and the second listing is named.
    stats = prepare(replace(PETS, subsets={"trainval": "train", "test": "train"}), root, tmp_path / "out")
    assert stats["skipped_images"] == [{"image": name, "subset": "trainval", "reason":
                                        f"{(root / 'images' / f'{name}.jpg').resolve()} is in subset 'test' too, "
                                        "of the same role: kept once"}]
    assert sum(s["images"] for s in stats["splits"].values()) == 16


def test_two_files_of_one_item_id_in_two_subsets_are_refused(demo_coco, tmp_path):
    """Prepared images are stored by item id: a second file of the same id would overwrite the first."""
    shutil.copytree(demo_coco / "photos", demo_coco / "other")
    edit_json(demo_coco / "labels" / "train.json", lambda coco: coco["images"][0].update(file_name="test_0000.jpg"))
    options = {**DEMO_COCO.options, "image_root": {"train": "photos", "test": "other"}}
    with pytest.raises(DatasetLayoutError) as error:
        prepare(replace(DEMO_COCO, options=options), demo_coco, tmp_path / "out")
    assert str(error.value).splitlines()[1] == (
        f"    item id 'test_0000' names {(demo_coco / 'other' / 'test_0000.jpg').resolve()} (subset 'test') and "
        f"{(demo_coco / 'photos' / 'test_0000.jpg').resolve()} (subset 'train'): prepared images are stored by item id")


def test_exif_orientation_follows_the_annotations_size(demo_coco, tmp_path):
    """A phone photo: pixels stored turned, with EXIF orientation 6 (turn a quarter clockwise to show it)."""
    photos, train = demo_coco / "photos", demo_coco / "labels" / "train.json"
    coco = json.loads(train.read_text())
    names = [i["file_name"] for i in coco["images"] if any(a["image_id"] == i["id"] for a in coco["annotations"])]
    shown = {name: np.asarray(Image.open(photos / name)) for name in names[:3]}  # 120 x 160, as annotated
    exif = Image.Exif()
    exif[0x0112] = 6
    as_shown, as_stored, no_size = names[:3]
    for name in (as_shown, no_size):  # stored a quarter turn back; viewers turn it to what was annotated
        Image.fromarray(shown[name]).transpose(Image.Transpose.ROTATE_90).save(photos / name, quality=95, exif=exif)
    Image.fromarray(shown[as_stored]).save(photos / as_stored, quality=95, exif=exif)  # annotated as stored
    edit_json(train, lambda c: [(i.pop("width"), i.pop("height")) for i in c["images"] if i["file_name"] == no_size])
    out = tmp_path / "out"
    stats = prepare(DEMO_COCO, demo_coco, out)
    stem = lambda name: name.rsplit(".", 1)[0]  # noqa: E731
    assert {k: v for k, v in reasons(stats, "converted").items() if k in map(stem, names)} == {
        stem(as_shown): "EXIF orientation 6 applied: the annotations are 120 x 160, the image's size as shown",
        stem(as_stored): "EXIF orientation 6 ignored: the annotations are 120 x 160, the image's size as stored",
        # Without a size in the json the importer draws the polygons on the image as viewers show it.
        stem(no_size): "EXIF orientation 6 applied: the annotations are 120 x 160, the image's size as shown"}
    objects = {a["image_id"]: [] for a in coco["annotations"]}
    for a in coco["annotations"]:
        objects[a["image_id"]].append(a["segmentation"])
    ids = {i["file_name"]: i["id"] for i in coco["images"]}
    images = prepared(out)
    for name in (as_shown, as_stored, no_size):
        image, anns = images[f"images/{stem(name)}.png"]
        assert (image["width"], image["height"]) == (160, 120)
        pixels = load_image(out / image["file_name"])  # what training and evaluation read
        assert Image.open(out / image["file_name"]).getexif().get(0x0112) is None
        assert np.abs(pixels.astype(int) - shown[name]).mean() < 4
        # The prepared masks lie on the objects' true pixels.
        truth = union(objects[ids[name]], 120, 160)
        mask = union([a["segmentation"] for a in anns], 120, 160)
        assert (mask & truth).sum() / (mask | truth).sum() > 0.95
    # `predict` on the user's raw photo sees it as viewers do.
    assert load_image(photos / as_shown).shape == (120, 160, 3)
    shown_in_report = tables.left_out({"mine": stats}, limit=100)
    assert set(shown_in_report[shown_in_report["what"] == "converted image"]["image"]) >= set(map(stem, names[:3]))


def test_16_bit_images_keep_their_contrast(demo_coco, tmp_path):
    photos, train = demo_coco / "photos", demo_coco / "labels" / "train.json"
    gray = {name: np.asarray(Image.open(photos / name).convert("L")) for name in ("train_0000.jpg", "train_0001.jpg")}
    twelve = gray["train_0000.jpg"].astype(np.uint16) * 16        # a 12-bit sensor's values
    full = gray["train_0001.jpg"].astype(np.uint16) * 257         # full-range 16-bit
    assert 2048 <= twelve.max() < 4096
    Image.fromarray(twelve).save(photos / "train_0000.png")
    Image.fromarray(full).save(photos / "train_0001.png")
    assert Image.open(photos / "train_0000.png").mode == "I;16"
    edit_json(train, lambda coco: [i.update(file_name=i["file_name"].replace(".jpg", ".png")) for i in coco["images"]
                                   if i["file_name"] in gray])
    out = tmp_path / "out"
    stats = prepare(DEMO_COCO, demo_coco, out)
    converted = reasons(stats, "converted")
    assert converted["train_0000"] == f"I;16 image: values up to {twelve.max()} read as 12-bit, scaled to 8 bits"
    assert converted["train_0001"] == f"I;16 image: values up to {full.max()} read as 16-bit, scaled to 8 bits"
    for name, original in gray.items():
        pixels = load_image(out / "images" / name.replace(".jpg", ".png"))
        assert (pixels == 255).mean() < 0.01 and pixels.std() > 10
        assert np.abs(pixels[..., 0].astype(int) - original).max() <= 1  # the same picture, in 8 bits


def test_an_object_outside_its_image_is_skipped_by_annotation_id(demo_coco, tmp_path):
    train = demo_coco / "labels" / "train.json"

    def add_outside(coco):
        image = coco["images"][0]["id"]
        for ann_id, polygon in ((901, [200, 10, 230, 10, 230, 40]), (902, [-50, -30, -10, -30, -10, -5])):
            coco["annotations"].append({"id": ann_id, "image_id": image, "category_id": 0, "iscrowd": 0,
                                        "segmentation": [polygon], "bbox": [0, 0, 1, 1], "area": 1})
    edit_json(train, add_outside)
    stats = prepare(DEMO_COCO, demo_coco, tmp_path / "out")
    skipped = [e for split in stats["splits"].values() for e in split["skipped_objects"]]
    assert skipped == [
        {"image": "train_0000", "reason": "labels/train.json: annotation 901: the polygon lies entirely outside the "
                                          "image (x 200 to 230, y 10 to 40; the image is 160 wide, 120 high)"},
        {"image": "train_0000", "reason": "labels/train.json: annotation 902: the polygon lies entirely outside the "
                                          "image (x -50 to -10, y -30 to -5; the image is 160 wide, 120 high)"}]
    shown_in_report = tables.left_out({"mine": stats})
    assert list(shown_in_report["what"]) == ["skipped object", "skipped object"]
    assert tables.datasets({"mine": stats})["skipped objects"].sum() == 2
