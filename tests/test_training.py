import json
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from pipelines import training
from pipelines.datasets import demo
from pipelines.datasets.prepare import prepare
from pipelines.inference import InputSpec


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("wgisd")
    demo.make_wgisd(root / "raw", 16, 4, seed=0)
    prepare("wgisd", root / "raw", root / "prepared", {}, {"train": "train", "test": "test"}, 1.0, 0.25, 0.2, 0)
    return root / "prepared"


def test_flip_moves_masks_with_boxes(prepared):
    dataset = training.CocoInstances(prepared / "train.json", InputSpec(size=96), flip=True)
    for seed in range(6):  # both flipped and unflipped draws
        training.random.seed(seed)
        _, target = dataset[0]
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1.5)


def test_crowd_regions_are_not_targets(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    from PIL import Image
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    ann = {"image_id": 1, "category_id": 1, "segmentation": rle, "area": 36.0, "bbox": [2, 2, 6, 6]}
    (tmp_path / "s.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/a.png", "height": 20, "width": 20}],
        "annotations": [{**ann, "id": 1, "iscrowd": 0}, {**ann, "id": 2, "iscrowd": 1}],
        "categories": [{"id": 1, "name": "x"}]}))
    _, target = training.CocoInstances(tmp_path / "s.json", InputSpec(size=40), flip=False)[0]
    assert target["labels"].tolist() == [1] and target["boxes"].tolist() == [[4.0, 4.0, 16.0, 16.0]]


def test_warmup_then_cosine():
    assert training.lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert training.lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert training.lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert training.lr_factor(99, 100, 10, "constant") == 1.0


def test_fit_keeps_best_epoch_and_is_deterministic(prepared, tiny_spec, tmp_path):
    spec = tiny_spec(epochs=2)
    first = training.fit(spec, prepared, tmp_path / "a", log=lambda _: None)
    second = training.fit(spec, prepared, tmp_path / "b", log=lambda _: None)
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    assert first["history"] == [{**h, "seconds": f["seconds"]} for h, f in zip(second["history"], first["history"])]
    saved = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    assert saved["epoch"] == first["best_epoch"] and saved["labels"] == ["grape"]


def test_diverging_loss_stops_with_step(prepared, tiny_spec, tmp_path):
    spec = tiny_spec(lr=1e6, grad_clip=0.0, warmup_iters=1)
    with pytest.raises(FloatingPointError, match="at epoch 1 step"):
        training.fit(spec, prepared, tmp_path, log=lambda _: None)
