"""Predict with an exported IR alone: images in, COCO-json predictions and overlay images out.

    python -m pipelines.predict --ir models/tiny-pets/ir/fp32/model.xml --images photos/ --out predictions/

Everything the IR needs (labels, input size, mean/std, resize mode, score threshold) is read from the
IR itself; this module imports neither torch nor any training code.
"""

import argparse
import json
from pathlib import Path

from PIL import Image

from pipelines.cli import run
from pipelines.files import write_atomic, write_text_atomic
from pipelines.inference import InputSpec, load_image, predict_image
from pipelines.ir import OpenVinoPredictor
from pipelines.visualize import overlay

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# What Pillow raises for a file that holds no whole image: OSError (unreadable, truncated, not an image format it
# knows), SyntaxError (a corrupt PNG or other plugin's file), DecompressionBombError (too many pixels to decode).
UNREADABLE = (OSError, SyntaxError, Image.DecompressionBombError)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ir", type=Path, required=True, help="model.xml of an exported IR (model.bin beside it)")
    p.add_argument("--images", type=Path, nargs="+", required=True, help="image files or folders of images")
    p.add_argument("--out", type=Path, required=True, help="folder for predictions.json and overlays/")
    p.add_argument("--score-threshold", type=float,
                   help="default: the threshold stored in the IR (the graph already drops detections below it)")
    p.add_argument("--show-threshold", type=float, default=0.3, help="overlays draw detections above this score")
    p.add_argument("--device", default="CPU", help="OpenVINO device (default: CPU)")
    return p


def image_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("._"))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"predict: {path} does not exist")
    if not files:
        raise SystemExit(f"predict: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, paths))}")
    return files


def main(args=None) -> None:
    args = parser().parse_args(args)
    predictor = OpenVinoPredictor(args.ir, device=args.device)
    spec = InputSpec.from_dict(predictor.input_spec)
    threshold = predictor.score_threshold if args.score_threshold is None else args.score_threshold
    (args.out / "overlays").mkdir(parents=True, exist_ok=True)
    images, predictions, skipped = [], [], 0
    files = image_files(args.images)
    for number, path in enumerate(files, 1):
        try:
            pixels = load_image(path)
        except UNREADABLE as error:  # one bad file among a user's photos: the others still get their predictions
            skipped += 1
            print(f"[{number}/{len(files)}] skipped {path}: unreadable, truncated or not an image ({error})",
                  flush=True)
            continue
        image_id = len(images) + 1
        results = predict_image(predictor, pixels, spec, threshold, image_id)
        images.append({"id": image_id, "file_name": str(path), "height": pixels.shape[0], "width": pixels.shape[1]})
        predictions += results
        shown = [r for r in results if r["score"] >= args.show_threshold]
        write_atomic(args.out / "overlays" / f"{path.stem}.png", overlay(pixels, shown, predictor.labels).save)
        print(f"[{number}/{len(files)}] {path}: {len(results)} objects", flush=True)
    if not images:
        raise SystemExit(f"predict: none of the {len(files)} images could be read (see above); nothing written")
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(predictor.labels)]
    write_text_atomic(args.out / "predictions.json", json.dumps(
        {"images": images, "categories": categories, "annotations": predictions}))
    print(f"wrote {args.out / 'predictions.json'} and {len(images)} overlays"
          + (f"; skipped {skipped} unreadable images (named above)" if skipped else ""))


if __name__ == "__main__":
    run(main)
