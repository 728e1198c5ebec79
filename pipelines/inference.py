"""The one pre- and post-processing path shared by every predictor (PyTorch, OpenVINO IR).

A predictor maps a preprocessed `[1, 3, H, W]` float32 array to four arrays: boxes `[N, 4]` (x0, y0,
x1, y1 in input pixels), scores `[N]`, labels `[N]` (1-based category ids) and mask probabilities
`[N, 28, 28]` inside each box. Resize, normalisation and mask pasting happen here, outside the graph,
so the PyTorch and IR evaluations differ by the conversion alone.

Three resize modes, for an input size S:
    letterbox    the longer side scaled to S, the image at the top left of an S x S canvas (H = W = S)
    keep_ratio   the longer side scaled to S, padded at the bottom and right to a multiple of
                 `size_divisor` (MMDetection's and OTX's test pipeline: H and W vary per image)
    stretch      scaled to S x S whatever the aspect ratio (OTE's EfficientNet-B2B templates), padded
                 like keep_ratio
Padding is the mean colour (0 after normalisation).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipelines import tiling

# The input a model takes unless its template says otherwise: pipelines.config.TemplateSpec's defaults are these.
# ImageNet statistics in 0..255 pixel values (RGB), what most ImageNet-trained backbones expect.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
CHANNEL_ORDER = "RGB"
RESIZE_MODE = "letterbox"
SIZE_DIVISOR = 32
# The values `channels` and `resize_mode` may take (params.yaml's are checked against these).
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("letterbox", "keep_ratio", "stretch")
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class InputSpec:
    """What the graph expects: built from a template by `template_input`, or read back from the copy an exported
    IR carries in its runtime info (`from_dict`)."""
    size: int
    mean: tuple = MEAN                  # per channel, in the order of `channels`, on 0..255 pixel values
    std: tuple = STD
    channels: str = CHANNEL_ORDER       # RGB | BGR: the channel order the graph takes
    resize_mode: str = RESIZE_MODE      # letterbox | keep_ratio | stretch (see the module's docstring)
    size_divisor: int = SIZE_DIVISOR    # keep_ratio and stretch: the canvas sides are multiples of this
    tile_size: int = 0                  # > 0: the image is also seen as tiles of this side (pipelines.tiling)
    tile_overlap: float = 0.0           # ... overlapping by this share of a tile

    def __post_init__(self):
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"channels is {self.channels!r}; expected one of {CHANNEL_ORDERS}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode is {self.resize_mode!r}; expected one of {RESIZE_MODES}")
        if self.size_divisor < 1:
            raise ValueError(f"size_divisor is {self.size_divisor}; expected a positive integer")

    @property
    def fixed_shape(self) -> tuple | None:
        """The `[1, 3, H, W]` shape of every input, or None where it depends on the image (keep_ratio)."""
        if self.resize_mode == "keep_ratio":
            return None
        side = self.size if self.resize_mode == "letterbox" else _round_up(self.size, self.size_divisor)
        return (1, 3, side, side)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "InputSpec":
        """The inverse of `to_dict`, e.g. for the copy in an IR's runtime info (JSON turns tuples into lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def template_input(spec) -> InputSpec:
    """The pre-processing a template (`pipelines.config.TemplateSpec`) asks for: the same in training, evaluation
    and the IR."""
    if spec.tiling == "auto":
        raise ValueError("tiling auto is decided from the training split when training starts "
                         "(training.resolve_tiling); this template's was not")
    tiles = spec.tiling or {}
    return InputSpec(size=spec.input_size, mean=tuple(spec.mean), std=tuple(spec.std), channels=spec.channels,
                     resize_mode=spec.resize_mode, size_divisor=spec.size_divisor,
                     tile_size=tiles.get("size", 0), tile_overlap=tiles.get("overlap", 0.0))


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3 as viewers show the file: its EXIF orientation applied, whatever its mode (grayscale,
    CMYK, RGBA, palette). Prepared images carry no orientation (prepare writes them turned the way their
    annotations were drawn), so training and evaluation read them as stored, and `predict` reads a user's
    photos the way a viewer shows them."""
    with Image.open(path) as image:
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image that has no orientation
        return np.asarray(image.convert("RGB"))


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


@dataclass(frozen=True)
class Placement:
    """Where an image of `height` x `width` pixels lands in the input: resized to `resized` (h, w) at the top
    left of a `canvas` (h, w); input pixels = image pixels x `scale` (x, y)."""
    resized: tuple
    canvas: tuple
    scale: tuple


def placement(height: int, width: int, spec: InputSpec, fill: float = 1.0) -> Placement:
    """How `spec` resizes and pads an image; `fill` < 1 shrinks it (training's multiscale augmentation):
    the image then spans that share of the size S."""
    target = spec.size * fill
    if spec.resize_mode == "stretch":
        scale_y, scale_x = target / height, target / width
    else:
        scale_y = scale_x = target / max(height, width)
    resized = max(1, round(height * scale_y)), max(1, round(width * scale_x))
    if spec.resize_mode == "letterbox":
        canvas = (spec.size, spec.size)
    else:
        canvas = tuple(_round_up(side, spec.size_divisor) for side in resized)
    return Placement(resized, canvas, (scale_x, scale_y))


def preprocess(image: np.ndarray, spec: InputSpec, fill: float = 1.0) -> tuple[np.ndarray, tuple]:
    """Resizes, pads and normalises one RGB image as `spec` says; returns the `[1, 3, H, W]` input and its
    scale (x, y) from image to input pixels. `fill`: see `placement`."""
    place = placement(*image.shape[:2], spec, fill)
    (new_h, new_w), (canvas_h, canvas_w) = place.resized, place.canvas
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    if spec.channels == "BGR":
        resized = resized[:, :, ::-1]
    normalised = (resized - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    batch = np.zeros((1, 3, canvas_h, canvas_w), dtype=np.float32)  # padding = the mean colour
    batch[0, :, :new_h, :new_w] = normalised.transpose(2, 0, 1)
    return batch, place.scale


def postprocess(outputs, scale: tuple, height: int, width: int, image_id: int, score_threshold: float) -> list:
    """Graph outputs of one image -> COCO result dicts in the original image's pixels (`scale`: the (x, y)
    scale `preprocess` returned)."""
    boxes, scores, labels, masks = (np.asarray(o) for o in outputs)
    keep = scores >= score_threshold
    scale_x, scale_y = scale
    boxes = boxes[keep] / np.asarray([scale_x, scale_y, scale_x, scale_y], np.float32)
    scores, labels, masks = scores[keep], labels[keep], masks[keep]
    if len(scores) == 0:
        return []
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    results = []
    for box, score, label, probabilities in zip(boxes, scores, labels, masks):
        mask = paste_mask(probabilities, box, height, width) >= MASK_THRESHOLD
        rle = tiling.encoded(mask)
        x0, y0, x1, y1 = (float(v) for v in box)
        results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
    return results


def paste_mask(probabilities: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """An M x M mask of probabilities inside `box` -> an H x W probability image.

    As torchvision does, the mask gets a one-cell zero border and the box grows to match, so the
    bilinear resize fades out at the box edge instead of clamping there.
    """
    size = probabilities.shape[-1]
    padded = np.pad(probabilities.astype(np.float32), 1)
    grow = (size + 2) / size
    center_x, center_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) / 2 * grow, (box[3] - box[1]) / 2 * grow
    x0, y0 = int(center_x - half_w), int(center_y - half_h)
    x1, y1 = int(center_x + half_w), int(center_y + half_h)
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    resized = np.asarray(Image.fromarray(padded, mode="F").resize((w, h), Image.BILINEAR))
    image = np.zeros((height, width), np.float32)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
    if ix1 > ix0 and iy1 > iy0:
        image[iy0:iy1, ix0:ix1] = resized[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    return image


def predict_image(predictor, pixels: np.ndarray, spec: InputSpec, score_threshold: float, image_id: int = 0) -> list:
    """One RGB image through pre-processing, `predictor` and post-processing: COCO results in its pixels. What a
    deployment runs per image, and what side-by-side timing times. A tiled spec runs every tile and the whole
    image, merged (pipelines.tiling)."""
    def once(image: np.ndarray, image_id: int) -> list:
        batch, scale = preprocess(image, spec)
        return postprocess(predictor(batch), scale, image.shape[0], image.shape[1], image_id, score_threshold)
    if spec.tile_size:
        return tiling.predict_tiled(once, pixels, tiling.Tiling(spec.tile_size, spec.tile_overlap), image_id)
    return once(pixels, image_id)


def split_images(split_json: Path, count: int, seed: int | None = None) -> list:
    """RGB images of a prepared split: its first `count`, or with `seed` `count` drawn reproducibly (kept in the
    split's order)."""
    images = json.loads(Path(split_json).read_text())["images"]
    chosen = range(min(count, len(images))) if seed is None else \
        sorted(np.random.default_rng(seed).permutation(len(images))[:count])
    return [load_image(Path(split_json).parent / images[i]["file_name"]) for i in chosen]


def split_inputs(split_json: Path, spec: InputSpec, count: int, seed: int | None = None) -> list:
    """`split_images` preprocessed as `spec` says: `[1, 3, H, W]` inputs, e.g. what latency is timed on, what
    export traces and calibrates on."""
    return [preprocess(pixels, spec)[0] for pixels in split_images(split_json, count, seed)]


def predict_split(predictor, split_json: Path, spec: InputSpec, score_threshold: float, progress=None) -> list:
    """Runs `predictor` over every image of a prepared COCO split; returns COCO results."""
    coco = json.loads(Path(split_json).read_text())
    results = []
    for image in coco["images"]:
        pixels = load_image(Path(split_json).parent / image["file_name"])
        results += predict_image(predictor, pixels, spec, score_threshold, image["id"])
        if progress:
            progress()
    return results
