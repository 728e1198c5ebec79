"""`prepare` against a plain Datumaro import-and-export of the same Cityscapes files: images/s and peak memory.

    python -m benchmarks.prepare [--images 150 300] [--workdir /tmp/prepare-bench]

Writes a Cityscapes-layout set of full-size (2048 x 1024) frames (leftImg8bit png, gtFine instanceIds
and labelIds png; about ten objects of the eight evaluated classes per frame, some crowd regions),
then, for each size, runs in fresh processes:

- `prepare`: this project's import (one instance per object from instanceIds, crowd regions), a
  full decode of every image and mask, the seeded class-balanced split, COCO json with RLE masks and
  images copied byte for byte;
- plain Datumaro: `Dataset.import_from(root, "cityscapes")` and `export(..., "coco_instances",
  save_media=True)`, which keeps only semantic masks (one per class, REFERENCE.md section 2).

It prints images per second and peak resident memory of each, side by side, and the ratios.
"""

import argparse
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

WIDTH, HEIGHT = 2048, 1024
LABEL_IDS = [24, 25, 26, 27, 28, 31, 32, 33]
ROAD, SKY, BUILDING = 7, 23, 11

PREPARE = """
import json, resource, sys, time
from pathlib import Path
from pipelines.config import DatasetSpec
from pipelines.datasets.prepare import prepare
start = time.perf_counter()
spec = DatasetSpec("cityscapes_instances", "cityscapes", {{"train": "train", "val": "test"}})
stats = prepare(spec, Path(sys.argv[1]), Path(sys.argv[2]))
images = sum(s["images"] for s in stats["splits"].values())
print(json.dumps({{"seconds": time.perf_counter() - start, "images": images,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

DATUMARO = """
import json, resource, sys, time
from datumaro.components.dataset import Dataset
start = time.perf_counter()
dataset = Dataset.import_from(sys.argv[1], "cityscapes")
dataset.export(sys.argv[2], "coco_instances", save_media=True)
print(json.dumps({{"seconds": time.perf_counter() - start, "images": len(dataset),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_frame(args) -> None:
    """One frame: a street-like picture and its instanceIds/labelIds, objects drawn into both."""
    root, split, index = args
    rng = np.random.default_rng(index)
    city = "benchcity"
    stem = f"{city}_{index // 1000:06d}_{index % 1000:06d}"
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = (xx // 8 + index * 7) % 256
    image[..., 1] = (yy // 4) % 256
    image[..., 2] = 128
    image += rng.integers(0, 12, size=(HEIGHT, WIDTH, 1), dtype=np.uint8)  # some texture, like a photo
    ids = np.full((HEIGHT, WIDTH), SKY, np.uint16)
    ids[HEIGHT // 3: HEIGHT // 2] = BUILDING
    ids[HEIGHT // 2:] = ROAD
    counts = {}
    for _ in range(int(rng.integers(6, 15))):
        label = int(rng.choice(LABEL_IDS))
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 300))
        x0, y0 = int(rng.integers(0, WIDTH - w)), int(rng.integers(HEIGHT // 3, HEIGHT - h))
        region = (slice(y0, y0 + h), slice(x0, x0 + w))
        ey, ex = np.mgrid[0:h, 0:w]
        inside = ((ey - h / 2) / (h / 2)) ** 2 + ((ex - w / 2) / (w / 2)) ** 2 <= 1
        crowd = rng.random() < 0.1
        ids[region][inside] = label if crowd else label * 1000 + counts.get(label, 0)
        counts[label] = counts.get(label, 0) + (not crowd)
        image[region][inside] = rng.integers(0, 256, size=3, dtype=np.uint8)
    labels = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
    for top, name, data in (("leftImg8bit", "leftImg8bit", image), ("gtFine", "gtFine_instanceIds", ids),
                            ("gtFine", "gtFine_labelIds", labels)):
        folder = root / top / split / city
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data).save(folder / f"{stem}_{name}.png", compress_level=1)


def make_cityscapes(root: Path, images: int) -> None:
    """`images` frames, a fifth of them in val; kept if an earlier run wrote them."""
    if (root / "done").is_file():
        return
    jobs = [(root, "val" if i % 5 == 0 else "train", i) for i in range(images)]
    with multiprocessing.Pool() as pool:
        for done, _ in enumerate(pool.imap_unordered(write_frame, jobs), 1):
            print(f"\rwriting {root}: {done}/{images} frames", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    (root / "done").write_text("")


def run(script: str, root: Path, out: Path) -> dict:
    """Runs `script` on `root` in a fresh interpreter; its json line: seconds, images, peak_mb."""
    result = subprocess.run([sys.executable, "-c", script.format(), str(root), str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, nargs="+", default=[150, 300])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/prepare-bench"))
    args = p.parse_args()
    rows = []
    for images in args.images:
        root = args.workdir / f"cityscapes-{images}"
        make_cityscapes(root, images)
        ours = run(PREPARE, root, args.workdir / f"prepared-{images}")
        plain = run(DATUMARO, root, args.workdir / f"datumaro-{images}")
        rows.append((images, ours, plain))
        print(f"{images} frames: prepare {ours['seconds']:.1f} s, plain Datumaro {plain['seconds']:.1f} s", file=sys.stderr)
    print(f"\nCityscapes layout, {WIDTH} x {HEIGHT} frames, this machine ({multiprocessing.cpu_count()} cores)\n")
    print("| frames | prepare img/s | Datumaro img/s | speed ratio | prepare peak MB | Datumaro peak MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for images, ours, plain in rows:
        fast, slow = images / ours["seconds"], images / plain["seconds"]
        print(f"| {images} | {fast:.2f} | {slow:.2f} | {fast / slow:.2f}x | {ours['peak_mb']:.0f} | {plain['peak_mb']:.0f} |")
    if len(rows) > 1:
        (small, s_ours, s_plain), (large, l_ours, l_plain) = rows[0], rows[-1]
        print(f"\npeak memory from {small} to {large} frames: prepare {s_ours['peak_mb']:.0f} -> {l_ours['peak_mb']:.0f} MB "
              f"({l_ours['peak_mb'] / s_ours['peak_mb']:.2f}x), Datumaro {s_plain['peak_mb']:.0f} -> "
              f"{l_plain['peak_mb']:.0f} MB ({l_plain['peak_mb'] / s_plain['peak_mb']:.2f}x)")


if __name__ == "__main__":
    main()
