"""Pictures of objects: masks tinted, boxes drawn, labels written; numpy and PIL only (the IR's
`predict` uses it without torch)."""

from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

from pipelines.inference import load_image

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def overlay(image: np.ndarray, objects: list, labels: list) -> Image.Image:
    """The image with each COCO object's mask tinted, its box drawn and its label (and score) written.

    `objects` are COCO annotations or results: category_id (1-based), segmentation (RLE), bbox, score if any.
    """
    canvas = image.astype(np.float32)
    for obj in objects:
        color = np.asarray(PALETTE[(obj["category_id"] - 1) % len(PALETTE)], np.float32)
        mask = mask_utils.decode(obj["segmentation"]).astype(bool)
        canvas[mask] = 0.5 * canvas[mask] + 0.5 * color
    picture = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for obj in objects:
        x, y, w, h = obj["bbox"]
        color = PALETTE[(obj["category_id"] - 1) % len(PALETTE)]
        dashed = obj.get("iscrowd", 0)
        draw.rectangle((x, y, x + w, y + h), outline=color, width=1 if dashed else 2)
        text = labels[obj["category_id"] - 1] + (f" {obj['score']:.2f}" if "score" in obj else "")
        draw.text((x + 2, y + 1), text + (" (crowd)" if dashed else ""), fill=color)
    return picture


def examples(split_json: dict, root: Path, results: list, count: int, show_threshold: float,
             width: int = 480, image_ids: list | None = None) -> Image.Image:
    """Ground truth beside prediction for the first `count` images with objects (or the images `image_ids`, in
    that order), one row per image."""
    labels = [c["name"] for c in sorted(split_json["categories"], key=lambda c: c["id"])]
    truth, predicted = {}, {}
    for ann in split_json["annotations"]:
        truth.setdefault(ann["image_id"], []).append(ann)
    for r in results:
        if r["score"] >= show_threshold:
            predicted.setdefault(r["image_id"], []).append(r)
    rows = []
    by_id = {image["id"]: image for image in split_json["images"]}
    chosen = [by_id[i] for i in image_ids] if image_ids is not None else \
        [i for i in sorted(split_json["images"], key=lambda i: i["id"]) if i["id"] in truth]
    for image in chosen:
        pixels = load_image(root / image["file_name"])
        pair = [overlay(pixels, truth.get(image["id"], []), labels),
                overlay(pixels, predicted.get(image["id"], []), labels)]
        scale = width / pixels.shape[1]
        rows.append([p.resize((width, max(1, round(pixels.shape[0] * scale)))) for p in pair])
        if len(rows) == count:
            break
    header = 18
    sheet = Image.new("RGB", (2 * width + 4, header + sum(r[0].height + 4 for r in rows)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), "ground truth", fill=(0, 0, 0))
    draw.text((width + 8, 3), f"prediction (score >= {show_threshold:.2f})", fill=(0, 0, 0))
    y = header
    for left, right in rows:
        sheet.paste(left, (0, y))
        sheet.paste(right, (width + 4, y))
        y += left.height + 4
    return sheet
