"""The project's COCO evaluation against pycocotools on one predictions file: same 12 stats, time; and what
the bootstrap intervals (pipelines.confidence) and the error analysis (pipelines.tide) add to an evaluation.

    python -m benchmarks.evaluation [--images 300] [--cell tv_lite0-pets] [--resamples 1000]

With `--cell TEMPLATE-DATASET` (after `make benchmark`, which trains models/<cell>-seed0/model.pt), the
evaluate stage's work on that dataset's test split is timed part by part: PyTorch predictions, COCO
scoring (what evaluation was before intervals), the bootstrap, the validation-split predictions and F1
threshold (the deploy numbers), and the error decomposition with its intervals; the whole evaluation's time
is printed with and without the error analysis.

Builds a synthetic ground truth (elliptic objects of three classes, some crowd regions) and jittered
predictions with false positives, then runs pycocotools and `pipelines.evaluation.evaluate` on the
same files, segm and bbox, and prints the stats side by side, the largest difference and the speed-up.
"""

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.evaluation import IOU_TYPES, STAT_NAMES, evaluate


def ellipse(size: int, box) -> dict:
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).ellipse(box, fill=1)
    rle = mask_utils.encode(np.asfortranarray(np.asarray(canvas, np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def synthetic_case(n_images: int, size: int = 256, seed: int = 0) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": size, "width": size})
        for _ in range(int(rng.integers(3, 12))):
            w, h = (int(v) for v in rng.integers(6, 150, size=2))  # small, medium and large objects
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            label, crowd = int(rng.integers(1, 4)), int(rng.random() < 0.03)
            rle = ellipse(size, (x, y, x + w, y + h))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": crowd})
            if rng.random() < 0.85:  # a detection of this object, a little off, sometimes the wrong class
                dx, dy, dw, dh = (int(v) for v in rng.integers(-4, 5, size=4))
                x0, y0 = max(0, x + dx), max(0, y + dy)
                box = (x0, y0, max(x0 + 2, min(size, x + w + dw)), max(y0 + 2, min(size, y + h + dh)))
                pred = ellipse(size, box)
                results.append({"image_id": image_id, "category_id": label if rng.random() > 0.1 else 1 + label % 3,
                                "score": float(rng.random()), "segmentation": pred,
                                "bbox": mask_utils.toBbox(pred).tolist()})
        for _ in range(int(rng.integers(0, 5))):  # false positives
            x, y = (int(v) for v in rng.integers(0, size - 30, size=2))
            pred = ellipse(size, (x, y, x + 30, y + 20))
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)), "score": float(rng.random() / 2),
                            "segmentation": pred, "bbox": mask_utils.toBbox(pred).tolist()})
    categories = [{"id": i, "name": f"class{i}"} for i in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_stats(gt_path: Path, results: list) -> tuple[dict, float]:
    start = time.perf_counter()
    stats = {}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_path))
        for iou_type in IOU_TYPES:
            # segm results without boxes, so that COCO sizes them by mask area, as the project does
            scored = [{k: v for k, v in r.items() if k != "bbox" or iou_type == "bbox"} for r in results]
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(json.loads(json.dumps(scored))), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats.update({f"{iou_type}_{n}": float(v) for n, v in zip(STAT_NAMES, evaluator.stats)})
    return stats, time.perf_counter() - start


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def bootstrap_cost(cell: str, resamples: int) -> None:
    """Times the evaluate stage's parts on one trained cell of the default run."""
    from pipelines import cells, checkpoints, engines
    from pipelines.cells import Cell
    from pipelines.config import load_params
    from pipelines import tide
    from pipelines.confidence import bootstrap, deployment
    from pipelines.inference import predict_split

    template, dataset = cell.split("-", 1)
    root = Path(__file__).resolve().parents[1]
    test, val = (root / "data" / "prepared" / dataset / f"{split}.json" for split in ("test", "val"))
    engine = load_params(root / "params.yaml").templates[template].engine
    trained = Cell(template, dataset, 0).model_dir(root / "models") / cells.MODEL_FILE
    loaded = checkpoints.load(trained, engines.adapter(engine))
    predictor = checkpoints.torch_predictor(loaded.graph)
    predict = lambda split: predict_split(predictor, split, loaded.input_spec, loaded.score_threshold)  # noqa: E731
    results, predicting = timed(lambda: predict(test))
    _, scoring = timed(lambda: evaluate(test, json.loads(json.dumps(results))))
    _, resampling = timed(lambda: bootstrap(test, results, resamples, 0))
    val_results, val_predicting = timed(lambda: predict(val))
    deploy, thresholding = timed(lambda: deployment(val, val_results, test, results))
    analysed, analysing = timed(lambda: tide.analyse(test, results, deploy["deploy_threshold"], resamples, 0))
    before = predicting + scoring
    print(f"\n{cell}: {len(json.loads(test.read_text())['images'])} test images, {len(results)} detections")
    print(f"test predictions {predicting:.2f} s, COCO scoring {scoring:.2f} s, bootstrap ({resamples} resamples, "
          f"segm and bbox) {resampling:.2f} s, val predictions {val_predicting:.2f} s, F1 threshold {thresholding:.2f} s")
    print(f"evaluation without intervals {before:.2f} s; with the bootstrap {before + resampling:.2f} s "
          f"({(before + resampling) / before:.2f}x); with the deploy numbers too "
          f"{before + resampling + val_predicting + thresholding:.2f} s "
          f"({(before + resampling + val_predicting + thresholding) / before:.2f}x)")
    stage = before + resampling + val_predicting + thresholding
    print(f"error analysis (masks and boxes, {resamples} resamples, confusion at the deploy threshold) "
          f"{analysing:.2f} s: the evaluation {stage:.2f} s without it, {stage + analysing:.2f} s with it "
          f"({(stage + analysing) / stage:.2f}x)")
    print("mask dAP: " + ", ".join(f"{k} {v['dap']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                                   for k, v in analysed["segm"]["dap"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--cell", help="TEMPLATE-DATASET of the default run: time the bootstrap on its test split")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    if args.cell:
        bootstrap_cost(args.cell, args.resamples)
        return
    ground_truth, results = synthetic_case(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = Path(tmp) / "gt.json"
        gt_path.write_text(json.dumps(ground_truth))
        reference, reference_seconds = pycocotools_stats(gt_path, results)
        start = time.perf_counter()
        ours, _ = evaluate(gt_path, json.loads(json.dumps(results)))
        our_seconds = time.perf_counter() - start
    print(f"{args.images} images, {len(ground_truth['annotations'])} objects, {len(results)} predictions\n")
    print(f"{'stat':<18}{'pycocotools':>14}{'project':>14}{'difference':>14}")
    worst = 0.0
    for key, value in reference.items():
        mine = -1.0 if ours[key] is None else ours[key] / 100  # the project reports percent, None for -1
        worst = max(worst, abs(mine - value))
        print(f"{key:<18}{value:>14.6f}{mine:>14.6f}{mine - value:>14.2e}")
    print(f"\nlargest difference: {worst:.2e}")
    print(f"pycocotools: {reference_seconds:.2f} s   project: {our_seconds:.2f} s   "
          f"speed-up: {reference_seconds / our_seconds:.2f}x")


if __name__ == "__main__":
    main()
