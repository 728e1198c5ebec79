import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from pipelines import cells, engines, training
from pipelines.inference import InputSpec
from pipelines.splits import TRAIN, split_file
from tests.conftest import prepared_wgisd

ROOT = Path(__file__).resolve().parents[1]


def fit(spec, data, out, seed=0, **options):
    """The shared loop driving the models of the template's engine."""
    return training.fit(spec, engines.get(spec.engine).Adapter, data, out, seed=seed, **options)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_wgisd(tmp_path_factory.mktemp("wgisd"), 16, 4)


@pytest.mark.parametrize("resize_mode", ["letterbox", "keep_ratio", "stretch"])
def test_flip_moves_masks_with_boxes(prepared, resize_mode):
    dataset = training.CocoInstances(split_file(prepared, TRAIN), InputSpec(size=96, resize_mode=resize_mode),
                                     flip=True)
    for seed in range(6):  # both flipped and unflipped draws
        training.random.seed(seed)
        image, target = dataset[0]
        assert target["masks"].shape[1:] == image.shape[1:]
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1.5)


def test_a_batch_of_keep_ratio_canvases_is_padded_to_the_largest():
    """keep_ratio canvases differ per image; collate pads images and masks at the bottom and right."""
    def item(height, width, objects):
        return torch.ones(3, height, width), {"boxes": torch.zeros(objects, 4), "masks": torch.ones(objects, height, width)}
    wide, tall = item(32, 64, 1), item(64, 32, 2)
    images, targets = training.collate([wide, tall])
    assert images.shape == (2, 3, 64, 64) and [t["masks"].shape for t in targets] == [(1, 64, 64), (2, 64, 64)]
    assert images[0, :, :32, :].all() and not images[0, :, 32:, :].any() and not images[1, :, :, 32:].any()
    assert targets[0]["masks"][:, :32].all() and not targets[0]["masks"][:, 32:].any()


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


TIMINGS = ("seconds", "data_wait_share", "images_per_second")


def untimed(history: list) -> list:
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in history]


def test_fit_is_deterministic(prepared, engine_spec, tmp_path):
    spec = engine_spec(epochs=2)
    first = fit(spec, prepared, tmp_path / "a", log=lambda _: None)
    second = fit(spec, prepared, tmp_path / "b", log=lambda _: None)
    assert [h["epoch"] for h in first.history] == [1, 2]
    assert untimed(first.history) == untimed(second.history)
    a, b = (torch.load(d / "model.pt", weights_only=False) for d in (tmp_path / "a", tmp_path / "b"))
    assert a["labels"] == ["grape"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not (tmp_path / "a" / cells.RESUME_FILE).exists()  # removed once training finished


def scripted_fit(monkeypatch, spec, prepared, out, val_maps):
    """fit() with validation scores taken from `val_maps` (one per epoch), so that the best epoch and the
    early stop are known in advance; returns the result and every epoch's saved training state."""
    scores = iter(val_maps)
    monkeypatch.setattr(training, "_validate", lambda *args: {"segm_map": next(scores), "bbox_map": 0.0,
                                                                 "segm_replicates": []})
    states = []

    def snapshot(record):  # called after the epoch was saved to resume.pt
        states.append(torch.load(out / cells.RESUME_FILE, weights_only=False)["training"])
    return fit(spec, prepared, out, log=lambda _: None, on_epoch=snapshot), states


def test_the_saved_weights_are_the_best_epochs(prepared, tiny_spec, tmp_path, monkeypatch):
    result, states = scripted_fit(monkeypatch, tiny_spec(epochs=3), prepared, tmp_path, [5.0, 9.0, 3.0])
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    assert result.best_epoch == saved["epoch"] == 2 and result.best_val_segm_map == 9.0
    assert all(torch.equal(saved["model"][k], states[1]["model"][k]) for k in saved["model"])
    assert not all(torch.equal(saved["model"][k], states[2]["model"][k]) for k in saved["model"])


def test_with_ema_the_saved_weights_are_the_best_epochs_average(prepared, engine_spec, tmp_path, monkeypatch):
    result, states = scripted_fit(monkeypatch, engine_spec(epochs=3, ema_decay=0.9), prepared, tmp_path,
                                  [5.0, 9.0, 3.0])
    saved = torch.load(tmp_path / "model.pt", weights_only=False)["model"]
    average = {k[len("module."):]: v for k, v in states[1]["ema"].items() if k.startswith("module.")}
    assert set(average) == set(saved) and all(torch.equal(saved[k], average[k]) for k in saved)
    raw = states[1]["model"]
    assert not all(torch.equal(saved[k], raw[k]) for k in saved)  # the average, not the raw weights
    images = len(training.CocoInstances(split_file(prepared, TRAIN), InputSpec(size=96), flip=False))
    assert int(states[1]["ema"]["n_averaged"]) == 2 * math.ceil(images / 2)  # one update per step, 2 epochs


def test_diverging_loss_stops_with_step_and_last_good_checkpoint(prepared, tiny_spec, tmp_path):
    spec = tiny_spec(lr=1e6, grad_clip=0.0, warmup_iters=1)
    with pytest.raises(FloatingPointError, match="at epoch 1 step .*lower the learning rate. Last good checkpoint: "
                                                 "none: it was the first epoch"):
        fit(spec, prepared, tmp_path, log=lambda _: None)


def test_out_of_memory_names_what_to_lower(prepared, tiny_spec, tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(training, "train_one_epoch", oom)
    with pytest.raises(MemoryError, match=r"lower its batch_size \(2\) or input_size \(96\)"):
        fit(tiny_spec(), prepared, tmp_path, log=lambda _: None)


RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from pipelines import engines, training
from pipelines.config import TemplateSpec
spec = TemplateSpec(**json.loads(sys.argv[2]))
training.fit(spec, engines.get(spec.engine).Adapter, Path(sys.argv[3]), Path(sys.argv[4]), seed=0, log=print)
"""


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch_with_the_same_result(prepared, engine_spec, tmp_path):
    spec = engine_spec(epochs=3)
    straight = fit(spec, prepared, tmp_path / "straight", log=lambda _: None)
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", RUN, str(ROOT), json.dumps(dataclasses.asdict(spec)),
                                str(prepared), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / cells.RESUME_FILE).exists():  # epoch 1 is saved: kill it during epoch 2
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = torch.load(out / cells.RESUME_FILE, weights_only=False)["training"]["epoch"]
    assert saved_epoch < 3
    logged = []
    resumed = fit(spec, prepared, out, log=logged.append)
    assert f"resuming from {out / cells.RESUME_FILE}: epoch {saved_epoch} of 3 done" in logged
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert untimed(resumed.history) == untimed(straight.history)
    a, b = (torch.load(d / "model.pt", weights_only=False)["model"] for d in (tmp_path / "straight", out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_stopped_at_a_rung_goes_on_exactly_as_an_uninterrupted_run(prepared, tiny_spec, tmp_path):
    """A race stops every template after its rung epoch; the ones that go on continue from there."""
    spec = tiny_spec(epochs=3)
    epochs = []
    straight = fit(spec, prepared, tmp_path / "straight", log=lambda _: None,
                   on_epoch=lambda record: epochs.append(
                       torch.load(tmp_path / "straight" / cells.RESUME_FILE, weights_only=False)["training"]))
    raced = tmp_path / "raced"
    at_rung = fit(spec, prepared, raced, log=lambda _: None, until_epoch=1)
    assert [h["epoch"] for h in at_rung.history] == [1] and not (raced / cells.MODEL_FILE).exists()
    kept = torch.load(raced / cells.RESUME_FILE, weights_only=False)["training"]
    assert all(torch.equal(kept["model"][k], epochs[0]["model"][k]) for k in kept["model"])  # the same epoch 1
    finished = fit(spec, prepared, raced, log=lambda _: None)
    assert untimed(finished.history) == untimed(straight.history) and not (raced / cells.RESUME_FILE).exists()
    a, b = (torch.load(d / cells.MODEL_FILE, weights_only=False)["model"] for d in (tmp_path / "straight", raced))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_file_of_another_recipe_is_not_used(prepared, tiny_spec, tmp_path):
    fit(tiny_spec(epochs=1), prepared, tmp_path, log=lambda _: None)
    (tmp_path / "model.pt").rename(tmp_path / "old.pt")
    torch.save({"fingerprint": "something else"}, tmp_path / cells.RESUME_FILE)
    logged = []
    fit(tiny_spec(epochs=1), prepared, tmp_path, log=logged.append)
    assert any("belongs to another recipe or data: training from the start" in m for m in logged)


def test_multiscale_moves_masks_with_boxes(prepared):
    dataset = training.CocoInstances(split_file(prepared, TRAIN), InputSpec(size=96), flip=True,
                                     scale_range=(0.5, 0.9))
    widths = set()
    for seed in range(6):
        training.random.seed(seed)
        image, target = dataset[0]
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1.5)
        columns = np.nonzero(image.abs().sum(dim=(0, 1)).numpy())[0]  # padding is 0 after normalisation
        widths.add(int(columns.max() - columns.min() + 1))
    assert len(widths) > 1 and max(widths) < 96  # the image fills different, smaller shares of the canvas


def test_recipe_options_adamw_plateau_and_early_stop(prepared, tiny_spec, tmp_path, monkeypatch):
    spec = tiny_spec(epochs=6, optimizer="adamw", lr=1e-4, schedule="plateau", plateau_patience=0,
                     plateau_factor=0.5, early_stop_patience=2)
    # Epochs 3 and 4 are not better than epoch 2: patience 2 stops the run after epoch 4 of 6.
    result, states = scripted_fit(monkeypatch, spec, prepared, tmp_path, [10.0, 20.0, 15.0, 18.0, 30.0, 40.0])
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and result.best_epoch == 2
    # Plateau with patience 0 halves the lr after each epoch without a new best (epoch 3): epoch 4 runs at half.
    assert [h["lr"] for h in result.history] == pytest.approx([1e-4, 1e-4, 1e-4, 5e-5])
    optimizer = states[-1]["optimizer"]
    assert "betas" in optimizer["param_groups"][0]                      # AdamW's, not SGD's
    assert {"exp_avg", "exp_avg_sq"} <= set(next(iter(optimizer["state"].values())))


def test_early_stop_rule():
    history = [{"val_segm_map": v} for v in (10, 20, 15, 18)]
    assert training._stop_early(history, 2) and not training._stop_early(history, 3)
    assert not training._stop_early(history[:3], 2) and not training._stop_early(history, 0)


def test_lr_scales_with_the_total_batch(tiny_spec):
    assert training.scaled_lr(tiny_spec(lr=0.02, batch_size=2), 1) == pytest.approx(0.02)
    assert training.scaled_lr(tiny_spec(lr=0.02, batch_size=2, lr_batch_size=16), 2) == pytest.approx(0.005)


def test_ema_weights_are_the_ones_validated(tiny_spec):
    adapter = engines.get("torchvision").Adapter
    with_ema = training.Training(tiny_spec(ema_decay=0.99), adapter, 2, torch.Generator(), 1, torch.device("cpu"))
    assert with_ema.evaluated() is with_ema.ema.module and with_ema.evaluated() is not with_ema.model
    plain = training.Training(tiny_spec(), adapter, 2, torch.Generator(), 1, torch.device("cpu"))
    assert plain.evaluated() is plain.model


@pytest.mark.slow
def test_each_engine_trains_on_tiles_and_its_model_predicts_tiled(prepared, engine_spec, tmp_path):
    """Tiling lives in the shared loop and inference path: either engine trains on the images and their tiles
    (more steps an epoch than on the images alone), keeps the tiling in model.pt, and its model predicts on every
    tile and the whole image."""
    from pipelines import checkpoints
    from pipelines.inference import predict_image, split_images
    from pipelines.splits import VAL

    tiles = {"size": 48, "overlap": 0.25, "min_share": 0.5}
    spec = engine_spec(epochs=1, tiling=tiles)
    steps = []
    fit(spec, prepared, tmp_path, log=lambda _: None, on_epoch=lambda record: steps.append(record))
    loaded = checkpoints.load(tmp_path / cells.MODEL_FILE, engines.get(spec.engine).Adapter)
    assert loaded.input_spec.tile_size == 48 and loaded.input_spec.tile_overlap == 0.25
    whole, tiled = (len(training.CocoInstances(split_file(prepared, TRAIN), InputSpec(size=96), flip=False,
                                               tiles=t)) for t in (None, training.tiling.Tiling(48, 0.25)))
    assert tiled > whole and steps and steps[0]["images_per_second"] > 0
    (pixels,) = split_images(split_file(prepared, VAL), 1)
    calls = []
    predictor = checkpoints.torch_predictor(loaded.graph)
    predict_image(lambda batch: calls.append(batch.shape) or predictor(batch), pixels, loaded.input_spec, 0.0)
    assert len(calls) == 1 + len(training.tiling.tiles(pixels.shape[1], pixels.shape[0],
                                                       training.tiling.Tiling(48, 0.25)))
