"""Tiling's geometry, its automatic sizes, the training targets of a tile and the merging of tile predictions."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from pipelines.tiling import (Tiling, auto, axis_starts, crop_objects, intersection_over_smaller, merge,
                              predict_tiled, shifted, tiles)


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def rectangle(height, width, x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


@pytest.mark.parametrize("length, size, overlap", [(2048, 512, 0.2), (1024, 512, 0.0), (1365, 400, 0.35),
                                                   (300, 512, 0.2)])
def test_tiles_cover_the_axis_border_to_border_with_at_least_the_overlap(length, size, overlap):
    starts = axis_starts(length, size, overlap)
    assert starts[0] == 0 and min(starts[-1] + size, length) == length
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start:start + size] = True
    assert covered.all()
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap * size - 1  # rounding to whole pixels


def test_an_image_is_tiled_row_by_row_and_a_small_one_is_one_tile():
    assert tiles(1000, 500, Tiling(500, 0.0)) == [(0, 0, 500, 500), (500, 0, 1000, 500)]
    assert tiles(300, 200, Tiling(512, 0.2)) == [(0, 0, 300, 200)]


def test_auto_sizes_the_tile_from_the_mean_object_and_the_overlap_from_the_largest():
    # Objects of 20 x 20 px in 2048 x 1024 frames: a tile of sqrt(400 / 0.03) = 116 px.
    found = auto([400.0] * 10, [20.0] * 9 + [58.0], [1024] * 3)
    assert found == Tiling(116, 0.5)  # 58 / 116, at the cap
    assert auto([400.0], [23.2], [1024]).overlap == pytest.approx(0.2)


def test_auto_leaves_large_objects_untiled():
    # Pets: the animal fills a good part of a 500 x 375 photo.
    assert auto([40000.0, 60000.0], [250.0, 300.0], [375, 375]) is None
    assert auto([], [], [375]) is None


def test_a_tile_keeps_objects_mostly_inside_it_cropped_and_leaves_the_others_out():
    height, width = 100, 200
    inside = {"id": 1, "category_id": 1, "segmentation": rle(rectangle(height, width, 10, 10, 30, 30)),
              "bbox": [10, 10, 20, 20]}
    mostly = {"id": 2, "category_id": 1, "segmentation": rle(rectangle(height, width, 90, 10, 110, 30)),
              "bbox": [90, 10, 20, 20]}   # half in the tile x < 100: kept at min_share 0.5
    barely = {"id": 3, "category_id": 2, "segmentation": rle(rectangle(height, width, 95, 50, 135, 60)),
              "bbox": [95, 50, 40, 10]}   # an eighth inside
    polygon = {"id": 4, "category_id": 2, "segmentation": [[40, 40, 60, 40, 60, 60, 40, 60]], "bbox": [40, 40, 20, 20]}
    boxed = {"id": 5, "category_id": 1, "bbox": [80, 80, 40, 10]}  # box only: half inside
    kept = crop_objects([inside, mostly, barely, polygon, boxed], height, width, (0, 0, 100, 100), 0.5)
    assert [a["id"] for a in kept] == [1, 2, 4, 5]
    assert kept[1]["bbox"] == [90.0, 10.0, 10.0, 20.0] and kept[1]["area"] == 200.0
    assert mask_utils.decode(kept[1]["segmentation"]).shape == (100, 100)
    assert kept[3]["bbox"] == [80, 80, 20, 10]
    right = crop_objects([mostly], height, width, (100, 0, 200, 100), 0.5)
    assert right[0]["bbox"] == [0.0, 10.0, 10.0, 20.0]  # the other half, in the right tile's pixels


def test_tile_results_move_to_the_image_and_a_cut_objects_halves_merge_into_one():
    height, width = 100, 200
    left = {"image_id": 0, "category_id": 1, "score": 0.9, "bbox": [90, 10, 10, 20],
            "segmentation": rle(rectangle(100, 100, 90, 10, 100, 30))}
    right = {"image_id": 0, "category_id": 1, "score": 0.8, "bbox": [0, 10, 12, 20],
             "segmentation": rle(rectangle(100, 100, 0, 10, 12, 30))}
    whole = {"image_id": 0, "category_id": 1, "score": 0.7, "bbox": [88, 10, 24, 20],
             "segmentation": rle(rectangle(height, width, 88, 10, 112, 30))}
    moved = shifted([left], (0, 0, 100, 100), height, width) + shifted([right], (100, 0, 200, 100), height, width)
    assert moved[1]["bbox"] == [100, 10, 12, 20]
    assert mask_utils.decode(moved[1]["segmentation"])[10:30, 100:112].all()
    # IoU of the halves is 0 (NMS would keep both); each lies inside the whole-image detection.
    assert intersection_over_smaller(moved[0]["segmentation"], whole["segmentation"]) == 1.0
    merged = merge(moved + [whole])
    assert len(merged) == 1 and merged[0]["score"] == 0.9 and merged[0]["bbox"] == [88.0, 10.0, 24.0, 20.0]


def test_merging_keeps_other_classes_and_separate_objects():
    height, width = 50, 50
    a = {"category_id": 1, "score": 0.9, "bbox": [0, 0, 10, 10], "segmentation": rle(rectangle(50, 50, 0, 0, 10, 10))}
    other_class = {**a, "category_id": 2, "score": 0.8}
    apart = {**a, "score": 0.7, "bbox": [30, 30, 10, 10], "segmentation": rle(rectangle(height, width, 30, 30, 40, 40))}
    assert [r["score"] for r in merge([apart, a, other_class])] == [0.9, 0.8, 0.7]


def test_predict_tiled_runs_every_tile_and_the_whole_image():
    pixels = np.zeros((100, 300, 3), np.uint8)
    seen = []

    def predict(crop, image_id):
        seen.append(crop.shape[:2])
        h, w = crop.shape[:2]  # one detection in the middle of whatever it sees
        mask = rectangle(h, w, w // 2 - 5, h // 2 - 5, w // 2 + 5, h // 2 + 5)
        return [{"image_id": image_id, "category_id": 1, "score": 0.5 + 0.001 * w, "bbox": [w // 2 - 5, h // 2 - 5, 10, 10],
                 "segmentation": rle(mask)}]
    found = predict_tiled(predict, pixels, Tiling(100, 0.0), image_id=7)
    assert seen == [(100, 300), (100, 100), (100, 100), (100, 100)]
    # The whole image's detection and the middle tile's are one object; the outer tiles' are apart.
    assert len(found) == 3 and all(r["image_id"] == 7 for r in found)
    assert sorted(r["bbox"][0] for r in found) == [45.0, 145.0, 245.0]


def test_a_templates_tiling_reaches_its_input_spec_and_an_irs_copy():
    from dataclasses import replace

    from pipelines.inference import InputSpec, template_input
    from tests.test_export import SPEC

    tiled = template_input(replace(SPEC, tiling={"size": 64, "overlap": 0.25, "min_share": 0.5}))
    assert (tiled.tile_size, tiled.tile_overlap) == (64, 0.25)
    assert InputSpec.from_dict(tiled.to_dict()) == tiled
    assert template_input(SPEC).tile_size == 0
    with pytest.raises(ValueError, match="tiling auto is decided from the training split"):
        template_input(replace(SPEC, tiling="auto"))


def test_predict_image_with_a_tiled_spec_predicts_every_tile_and_the_whole_image():
    from pipelines.inference import InputSpec, predict_image

    shapes = []

    def predictor(batch):
        shapes.append(batch.shape)
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 28, 28))
    assert predict_image(predictor, np.zeros((100, 300, 3), np.uint8), InputSpec(size=64, tile_size=100), 0.05) == []
    assert len(shapes) == 4 and all(s == (1, 3, 64, 64) for s in shapes)


def test_auto_tiling_is_decided_from_the_training_split(tmp_path):
    import json
    from dataclasses import replace

    from pipelines.training import resolve_tiling
    from tests.test_export import SPEC

    def split(side: int, object_side: int) -> None:
        (tmp_path / "train.json").write_text(json.dumps({
            "images": [{"id": 1, "width": side * 2, "height": side, "file_name": "a.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "iscrowd": 0, "area": object_side ** 2,
                             "bbox": [0, 0, object_side, object_side]}]}))
    logged = []
    split(1024, 20)
    small = resolve_tiling(replace(SPEC, tiling="auto"), tmp_path, logged.append)
    assert small.tiling == {"size": 116, "overlap": 0.172, "min_share": 0.5}
    split(375, 250)
    assert resolve_tiling(replace(SPEC, tiling="auto"), tmp_path, logged.append).tiling is None
    assert logged == ["tiling auto: tiles of 116 px overlapping by 17%",
                      "tiling auto: none (the objects are large for their images)"]
    assert resolve_tiling(SPEC, tmp_path) is SPEC  # nothing to decide


def test_training_samples_are_the_images_and_their_tiles_that_hold_an_object(tmp_path):
    from pipelines.inference import InputSpec
    from pipelines.splits import TRAIN, split_file
    from pipelines.tiling import Tiling
    from pipelines.training import CocoInstances
    from tests.conftest import prepared_wgisd

    prepared = prepared_wgisd(tmp_path, 4, 2)
    whole = CocoInstances(split_file(prepared, TRAIN), InputSpec(size=64), flip=False)
    tiled = CocoInstances(split_file(prepared, TRAIN), InputSpec(size=64), flip=False, tiles=Tiling(48, 0.25))
    assert len(tiled) > len(whole) and tiled.samples[:len(whole)] == whole.samples
    for index in range(len(whole), len(tiled)):
        image, target = tiled[index]
        assert image.shape == (3, 64, 64) and len(target["boxes"]) == len(target["labels"]) == len(target["masks"])
        assert (target["boxes"][:, 2:] <= 64).all()


def test_auto_tiles_the_small_object_demo_and_leaves_pets_untiled(tmp_path):
    """On the demo data as prepare writes it: Pets' animals fill their photos (no tiling); the small-object demo's
    16-40 px objects in 768 x 384 frames get tiles of about 130 px."""
    from dataclasses import replace

    from pipelines.config import DatasetSpec
    from pipelines.datasets import demo
    from pipelines.datasets.prepare import prepare
    from pipelines.training import resolve_tiling
    from tests.test_export import SPEC

    demo.make_pets(tmp_path / "pets", 12, 4, seed=0)
    demo.make_cityscapes(tmp_path / "small", 6, 2, seed=0, **demo.SMALL_OBJECTS)
    pets = DatasetSpec("oxford_pets", "pets", {"trainval": "train", "test": "test"},
                       {"breeds": False, "border_is_pet": True})
    small = DatasetSpec("cityscapes_instances", "small", {"train": "train", "val": "test"}, val_ratio=0.25)
    prepare(pets, tmp_path / "pets", tmp_path / "prepared_pets")
    prepare(small, tmp_path / "small", tmp_path / "prepared_small")
    auto = replace(SPEC, tiling="auto")
    assert resolve_tiling(auto, tmp_path / "prepared_pets", print).tiling is None
    tiles = resolve_tiling(auto, tmp_path / "prepared_small", print).tiling
    assert 100 <= tiles["size"] <= 160 and 0.2 <= tiles["overlap"] <= 0.5


def every_pair_merge(results: list, threshold: float = 0.5) -> list:
    """The merge compared with every free detection of the class on every pass (no extent test): what
    pipelines.tiling.merge must equal."""
    order = sorted(range(len(results)), key=lambda i: -results[i]["score"])
    taken, merged = set(), []
    for i in order:
        if i in taken:
            continue
        taken.add(i)
        union, grew, joined = results[i]["segmentation"], False, True
        while joined:
            joined = False
            for j in order:
                if j not in taken and results[j]["category_id"] == results[i]["category_id"] \
                        and intersection_over_smaller(union, results[j]["segmentation"]) > threshold:
                    taken.add(j)
                    union, grew, joined = mask_utils.merge([union, results[j]["segmentation"]]), True, True
        merged.append((i, mask_utils.decode(union).sum() if grew else None))
    return merged


def test_merging_compares_only_touching_masks_and_gives_the_every_pair_result():
    """Hundreds of detections of 2 classes scattered over a 400 x 300 image, many overlapping (tile
    predictions of the same objects): the same merged detections, masks and scores as comparing every pair."""
    rng = np.random.default_rng(0)
    results = []
    for _ in range(300):
        x, y, w, h = (int(v) for v in rng.integers([0, 0, 4, 4], [380, 280, 40, 30]))
        results.append({"image_id": 0, "category_id": int(rng.integers(1, 3)), "score": float(rng.random()),
                        "bbox": [x, y, w, h], "segmentation": rle(rectangle(300, 400, x, y, x + w, y + h))})
    found = merge(results)
    expected = every_pair_merge(results)
    assert len(found) == len(expected) < 300
    for got, (index, area) in zip(found, expected):
        assert got["score"] == results[index]["score"] and got["category_id"] == results[index]["category_id"]
        assert mask_utils.decode(got["segmentation"]).sum() == (area if area is not None else
                                                                mask_utils.decode(results[index]["segmentation"]).sum())
