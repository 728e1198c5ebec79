"""The one pre- and post-processing path shared by every predictor (PyTorch, OpenVINO IR).

A predictor maps a preprocessed `[1, 3, S, S]` float32 array to four arrays: boxes `[N, 4]` (x0, y0,
x1, y1 in input pixels), scores `[N]`, labels `[N]` (1-based category ids) and mask probabilities
`[N, 28, 28]` inside each box. Resize, normalisation and mask pasting happen here, outside the graph,
so the PyTorch and IR evaluations differ by the conversion alone.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

# ImageNet statistics in 0..255 pixel values (RGB), what most ImageNet-trained backbones expect.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
MASK_THRESHOLD = 0.5
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class InputSpec:
    """What the graph expects; the exported IR carries a copy in its runtime info."""
    size: int
    mean: tuple = MEAN              # per channel, in the order of `channels`, on 0..255 pixel values
    std: tuple = STD
    channels: str = "RGB"           # RGB | BGR: the channel order the graph takes
    resize_mode: str = "letterbox"  # longer side scaled to `size`, padded at the bottom and right

    def __post_init__(self):
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"channels is {self.channels!r}; expected one of {CHANNEL_ORDERS}")
        if self.resize_mode != "letterbox":
            raise ValueError(f"resize_mode is {self.resize_mode!r}; only letterbox is implemented")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "InputSpec":
        """The inverse of `to_dict`, e.g. for the copy in an IR's runtime info (JSON turns tuples into lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3, whatever the file's mode (grayscale, CMYK, RGBA, palette)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int, float]:
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def preprocess(image: np.ndarray, spec: InputSpec, fill: float = 1.0) -> tuple[np.ndarray, float]:
    """Letterboxes and normalises one RGB image; returns the `[1, 3, S, S]` input and its scale.

    `fill` is the share of the canvas the image's longer side spans: 1 at inference, less in
    training's multiscale augmentation.
    """
    height, width = image.shape[:2]
    new_h, new_w, scale = letterbox_size(height, width, spec.size * fill)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    if spec.channels == "BGR":
        resized = resized[:, :, ::-1]
    normalised = (resized - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    batch = np.zeros((1, 3, spec.size, spec.size), dtype=np.float32)  # padding = the mean colour
    batch[0, :, :new_h, :new_w] = normalised.transpose(2, 0, 1)
    return batch, scale


def postprocess(outputs, scale: float, height: int, width: int, image_id: int, score_threshold: float) -> list:
    """Graph outputs of one image -> COCO result dicts in the original image's pixels."""
    boxes, scores, labels, masks = (np.asarray(o) for o in outputs)
    keep = scores >= score_threshold
    boxes, scores, labels, masks = boxes[keep] / scale, scores[keep], labels[keep], masks[keep]
    if len(scores) == 0:
        return []
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    results = []
    for box, score, label, probabilities in zip(boxes, scores, labels, masks):
        mask = paste_mask(probabilities, box, height, width) >= MASK_THRESHOLD
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
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


def predict_split(predictor, split_json: Path, spec: InputSpec, score_threshold: float, progress=None) -> list:
    """Runs `predictor` over every image of a prepared COCO split; returns COCO results."""
    coco = json.loads(Path(split_json).read_text())
    results = []
    for image in coco["images"]:
        pixels = load_image(Path(split_json).parent / image["file_name"])
        batch, scale = preprocess(pixels, spec)
        outputs = predictor(batch)
        results += postprocess(outputs, scale, pixels.shape[0], pixels.shape[1], image["id"], score_threshold)
        if progress:
            progress()
    return results
