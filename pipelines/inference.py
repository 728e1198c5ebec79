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
import torch
from PIL import Image
from torchvision.models.detection.roi_heads import paste_masks_in_image

# ImageNet statistics on 0..1 pixels: what torchvision's backbones were trained with.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class InputSpec:
    """What the graph expects; the exported IR carries a copy in its runtime info."""
    size: int
    mean: tuple = MEAN
    std: tuple = STD
    resize_mode: str = "letterbox"  # longer side scaled to `size`, padded at the bottom and right

    def to_dict(self) -> dict:
        return asdict(self)


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3, whatever the file's mode (grayscale, CMYK, RGBA, palette)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int, float]:
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def preprocess(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, float]:
    """Letterboxes and normalises one RGB image; returns the `[1, 3, S, S]` input and its scale."""
    height, width = image.shape[:2]
    new_h, new_w, scale = letterbox_size(height, width, spec.size)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32) / 255
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
    pasted = paste_masks_in_image(torch.from_numpy(masks[:, None]).float(), torch.from_numpy(boxes).float(),
                                  (height, width), padding=1)[:, 0].numpy() >= MASK_THRESHOLD
    results = []
    for box, score, label, mask in zip(boxes, scores, labels, pasted):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = (float(v) for v in box)
        results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
    return results


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
