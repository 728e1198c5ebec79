"""Stage evaluate: a trained PyTorch model on the test split, measured as pipelines.scoring says (COCO segm and bbox
mAP, per class too, with bootstrap intervals and their replicates; the F1-best score threshold on the validation
split; batch-1 latency), plus its complexity, where it ran, and a picture of ground truth beside predictions."""

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from pipelines import checkpoints, complexity, engines, legs
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_atomic, write_text_atomic
from pipelines.inference import template_input
from pipelines.scoring import score
from pipelines.speed import machine
from pipelines.tide import worst_images
from pipelines.visualize import examples


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by the train stage")
    p.add_argument("--test", type=Path, required=True, help="prepared test split (COCO json)")
    p.add_argument("--val", type=Path, required=True, help="prepared validation split: picks the score threshold")
    p.add_argument("--out", type=Path, required=True, help="metrics json to write")
    p.add_argument("--replicates", type=Path, required=True, help="json to write the bootstrap replicates to")
    p.add_argument("--per-class", type=Path, required=True, help="json to write the per-class AP to")
    p.add_argument("--errors", type=Path, required=True, help="json to write the errors behind the mAP to")
    p.add_argument("--examples", type=Path, required=True,
                   help="jpg: test images, ground truth beside prediction (the report shows it)")
    p.add_argument("--error-examples", type=Path, required=True,
                   help="jpg: the test images with the most missed or false mask area at the deploy threshold")
    p.add_argument("--example-count", type=int, default=4)
    p.add_argument("--show-threshold", type=float, default=0.3, help="the picture shows detections above this score")
    return p


def write_stopped(args, record: dict) -> None:
    """A cell the race stopped: every output says so (pipelines/legs.py); no test image is looked at."""
    legs.write_stopped(args.out, record)
    for path in (args.per_class, args.replicates, args.errors):
        write_text_atomic(path, "{}")
    for path in (args.examples, args.error_examples):
        legs.write_stopped_picture(path, record)
    print(f"{args.model}: {legs.describe(record)} by the race; not evaluated on test")


def main(args=None) -> None:
    args = parser().parse_args(args)
    if (record := legs.read_stopped(args.model)) is not None:
        write_stopped(args, record)
        return
    params = load_params()
    adapter = engines.adapter(params.templates[args.template].engine)
    model, spec, _ = checkpoints.restore(args.model, adapter)  # built once: predicted with, then counted
    predictor = checkpoints.torch_predictor(adapter.inference_graph(model, spec))
    scored = score(predictor, template_input(spec), spec.score_threshold, args.test, args.val, params.confidence,
                   params.speed)
    metrics = {**scored.metrics, **complexity.count(model, adapter, spec.input_size),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), **machine()}
    write_text_atomic(args.out, json.dumps(metrics, indent=2))
    write_text_atomic(args.per_class, json.dumps(scored.per_class, indent=2))
    write_text_atomic(args.replicates, json.dumps(scored.replicates))
    write_text_atomic(args.errors, json.dumps(scored.errors))
    split = json.loads(args.test.read_text())
    picture = examples(split, args.test.parent, scored.results, args.example_count, args.show_threshold)
    write_atomic(args.examples, lambda staged: picture.save(staged, quality=90))
    worst = worst_images(scored.errors["deploy"]["areas"], args.example_count)
    threshold = metrics["deploy_threshold"] if metrics["deploy_threshold"] is not None else args.show_threshold
    worst_picture = examples(split, args.test.parent, scored.results, args.example_count, threshold, image_ids=worst)
    write_atomic(args.error_examples, lambda staged: worst_picture.save(staged, quality=90))
    print(f"PyTorch on {args.test}: segm mAP {metrics['segm_map']:.2f} [{metrics['segm_map_low']:.2f}, "
          f"{metrics['segm_map_high']:.2f}], bbox mAP {metrics['bbox_map']:.2f}, F1 {metrics['deploy_f1']:.1f} at "
          f"score {metrics['deploy_threshold']}, {metrics['gflops']} GFLOPs, {metrics['params_m']} M params, "
          f"latency {metrics['latency_ms']} ms")


if __name__ == "__main__":
    run(main)
