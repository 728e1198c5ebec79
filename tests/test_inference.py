import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from pipelines.inference import (InputSpec, load_image, placement, postprocess, preprocess, split_images,
                                 split_inputs)


def test_letterbox_keeps_aspect_and_pads():
    image = np.full((50, 100, 3), 255, np.uint8)
    batch, scale = preprocess(image, InputSpec(size=64))
    assert batch.shape == (1, 3, 64, 64) and scale == pytest.approx((0.64, 0.64))
    assert np.all(batch[0, :, 32:, :] == 0)                 # padding: the mean colour, 0 after normalising
    assert np.allclose(batch[0, 0, :32, :], (1 - 0.485) / 0.229, atol=1e-4)


@pytest.mark.parametrize("mode, size, resized, canvas, scale", [
    ("letterbox", 64, (32, 64), (64, 64), (0.64, 0.64)),
    ("keep_ratio", 64, (32, 64), (32, 64), (0.64, 0.64)),     # MMDetection's: no padding beyond /32
    ("keep_ratio", 100, (50, 100), (64, 128), (1.0, 1.0)),    # sides padded up to multiples of 32
    ("stretch", 64, (64, 64), (64, 64), (0.64, 1.28)),        # OTE's: aspect ratio not kept
    ("stretch", 100, (100, 100), (128, 128), (1.0, 2.0)),
])
def test_resize_modes_place_the_image(mode, size, resized, canvas, scale):
    """A 50 x 100 image (height x width) under each resize mode, figures worked out by hand."""
    spec = InputSpec(size=size, resize_mode=mode)
    place = placement(50, 100, spec)
    assert (place.resized, place.canvas) == (resized, canvas) and place.scale == pytest.approx(scale)
    batch, got_scale = preprocess(np.full((50, 100, 3), 255, np.uint8), spec)
    assert batch.shape == (1, 3, *canvas) and got_scale == place.scale
    assert np.all(batch[0, :, resized[0]:, :] == 0) and np.all(batch[0, :, :, resized[1]:] == 0)
    assert np.all(batch[0, :, :resized[0], :resized[1]] != 0)
    assert spec.fixed_shape == (None if mode == "keep_ratio" else (1, 3, *canvas))


def test_unknown_resize_mode_is_named():
    with pytest.raises(ValueError, match="resize_mode is 'crop'"):
        InputSpec(size=8, resize_mode="crop")


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_any_image_mode_loads_as_rgb_and_preprocesses(tmp_path, mode):
    """Grayscale, CMYK, RGBA and palette files become the RGB pixels they show, ready for the graph."""
    rgb = Image.new("RGB", (12, 8), (200, 100, 50))
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    if mode == "P":  # one palette entry holding the colour
        image = Image.new("P", rgb.size, 0)
        image.putpalette([200, 100, 50] + [0] * 765)
    else:
        image = rgb.convert(mode)
    image.save(path)
    pixels = load_image(path)
    assert pixels.shape == (8, 12, 3) and pixels.dtype == np.uint8
    expected = rgb.convert("L").convert("RGB") if mode == "L" else rgb
    assert np.abs(pixels.astype(int) - np.asarray(expected, int)).max() <= 3  # JPEG's CMYK round trip
    if mode == "L":
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    batch, _ = preprocess(pixels, InputSpec(size=16))
    assert batch.dtype == np.float32 and batch.shape == (1, 3, 16, 16)


def test_channel_order_mean_and_std_follow_the_spec():
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0], image[..., 2] = 200, 10  # red, blue
    rgb, _ = preprocess(image, InputSpec(size=8, mean=(0, 0, 0), std=(1, 1, 1)))
    bgr, _ = preprocess(image, InputSpec(size=8, mean=(100, 0, 0), std=(2, 1, 1), channels="BGR"))
    assert rgb[0, :, 0, 0].tolist() == [200, 0, 10]
    assert bgr[0, :, 0, 0].tolist() == [(10 - 100) / 2, 0, 200]  # blue first, with the first channel's statistics
    with pytest.raises(ValueError, match="channels is 'GBR'"):
        InputSpec(size=8, channels="GBR")


def test_postprocess_maps_back_to_image_pixels():
    # A box in input pixels of a 0.5 letterbox scale, with a mask full inside it.
    outputs = (np.array([[10, 20, 30, 40]], np.float32), np.array([0.9], np.float32), np.array([2]),
               np.ones((1, 28, 28), np.float32))
    (result,) = postprocess(outputs, scale=(0.5, 0.5), height=100, width=100, image_id=7, score_threshold=0.05)
    assert result["bbox"] == [20, 40, 40, 40] and result["category_id"] == 2 and result["image_id"] == 7
    assert isinstance(result["segmentation"]["counts"], str)
    # torchvision's paste (padding 1) may add about a pixel on each side.
    assert 40 * 40 <= mask_utils.area(result["segmentation"]) <= 42 * 42
    # A stretched input scales x and y apart.
    (result,) = postprocess(outputs, scale=(0.5, 2.0), height=100, width=100, image_id=7, score_threshold=0.05)
    assert result["bbox"] == [20, 10, 40, 10]
    assert 40 * 10 <= mask_utils.area(result["segmentation"]) <= 42 * 12


def test_postprocess_no_detections_and_threshold():
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0), np.zeros((0, 28, 28), np.float32))
    assert postprocess(empty, (1.0, 1.0), 10, 10, 1, 0.05) == []
    low = (np.array([[0, 0, 5, 5]], np.float32), np.array([0.01], np.float32), np.array([1]), np.ones((1, 28, 28)))
    assert postprocess(low, (1.0, 1.0), 10, 10, 1, 0.05) == []


def test_mask_paste_agrees_with_torchvision():
    import torch
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from pipelines.inference import paste_mask
    rng = np.random.default_rng(0)
    for _ in range(5):
        probabilities = rng.random((28, 28)).astype(np.float32)
        x0, y0 = rng.uniform(-10, 60, size=2)
        box = np.array([x0, y0, x0 + rng.uniform(5, 60), y0 + rng.uniform(5, 60)], np.float32)
        ours = paste_mask(probabilities, box, 100, 90) >= 0.5
        theirs = paste_masks_in_image(torch.from_numpy(probabilities)[None, None], torch.from_numpy(box)[None],
                                      (100, 90), padding=1)[0, 0].numpy() >= 0.5
        union = (ours | theirs).sum()
        assert union == 0 or (ours & theirs).sum() / union > 0.9


def test_a_splits_images_are_its_first_or_a_seeded_draw_kept_in_split_order(tmp_path):
    """What latency is timed on (the first test image) and what export traces and calibrates on (a seeded draw)."""
    shades = [10, 60, 110, 160, 210]
    for k, shade in enumerate(shades):
        Image.new("RGB", (8, 6), (shade,) * 3).save(tmp_path / f"{k}.png")
    split = tmp_path / "test.json"
    split.write_text(json.dumps({"images": [{"id": k + 1, "file_name": f"{k}.png"} for k in range(len(shades))]}))
    shown = lambda images: [int(pixels[0, 0, 0]) for pixels in images]  # noqa: E731
    assert shown(split_images(split, 2)) == [10, 60] and shown(split_images(split, 9)) == shades
    drawn = shown(split_images(split, 3, seed=0))
    assert drawn == shown(split_images(split, 3, seed=0)) == sorted(drawn) and len(set(drawn) & set(shades)) == 3
    assert drawn != shown(split_images(split, 3, seed=1))
    (first,) = split_inputs(split, InputSpec(size=8), 1)
    assert first.shape == (1, 3, 8, 8) and np.array_equal(first, preprocess(load_image(tmp_path / "0.png"),
                                                                            InputSpec(size=8))[0])
