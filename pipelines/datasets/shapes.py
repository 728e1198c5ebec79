"""Learnable synthetic objects: a binary shape mask and a class texture to paint it with.

The demo datasets (see `demo.py`) draw every object class as its own shape and texture, so a small
model can tell them apart within a few minutes of CPU training.
"""

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ellipse", "box", "triangle", "diamond", "cross", "ring", "star", "hexagon")


def shape_mask(shape: str, height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A `height` x `width` bool mask with `shape` drawn inside `box` = (x0, y0, x1, y1)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if shape == "ellipse":
        draw.ellipse(box, fill=1)
    elif shape == "box":
        draw.rectangle(box, fill=1)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=1)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=1)
    elif shape == "cross":
        draw.rectangle((x0, cy - h / 6, x1, cy + h / 6), fill=1)
        draw.rectangle((cx - w / 6, y0, cx + w / 6, y1), fill=1)
    elif shape == "ring":
        draw.ellipse(box, fill=1)
        draw.ellipse((x0 + w / 4, y0 + h / 4, x1 - w / 4, y1 - h / 4), fill=0)
    elif shape == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        draw.polygon([(cx + r * w / 2 * np.cos(a), cy + r * h / 2 * np.sin(a)) for a, r in zip(angles, radii)], fill=1)
    elif shape == "hexagon":
        angles = np.linspace(0, 2 * np.pi, 7)[:-1]
        draw.polygon([(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles], fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.asarray(canvas, dtype=bool)


def texture(rng: np.random.Generator, height: int, width: int, color, pattern: int) -> np.ndarray:
    """An RGB uint8 texture: `color` modulated by one of four patterns (stripes, checks, dots, grain)."""
    yy, xx = np.mgrid[0:height, 0:width]
    if pattern == 0:
        shade = (yy // 3) % 2
    elif pattern == 1:
        shade = ((yy // 4) + (xx // 4)) % 2
    elif pattern == 2:
        shade = ((yy % 5 < 2) & (xx % 5 < 2)).astype(int)
    else:
        shade = rng.integers(0, 2, size=(height, width))
    base = np.asarray(color, dtype=np.float32)
    image = base[None, None, :] * (0.75 + 0.25 * shade[..., None])
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A noisy grey gradient, different in every image."""
    top, bottom = rng.integers(60, 190, size=2)
    column = np.linspace(top, bottom, height, dtype=np.float32)[:, None, None]
    image = np.repeat(np.repeat(column, width, axis=1), 3, axis=2) + rng.normal(0, 10, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def random_box(rng: np.random.Generator, height: int, width: int, min_size: int, max_size: int, taken: list) -> tuple:
    """A box of side in [min_size, max_size] that overlaps no box in `taken` by more than a quarter of its area."""
    for _ in range(50):
        w, h = (int(s) for s in rng.integers(min_size, max_size + 1, size=2))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, other) < 0.25 * w * h for other in taken):
            return box
    return None


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)
