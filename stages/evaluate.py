"""Stage evaluate: COCO segm and bbox mAP of a trained PyTorch model on the test split, per class too, with
bootstrap intervals (and the replicates behind them, for the report's paired comparisons); the F1-best score
threshold on the validation split and precision / recall / F1 with it on the test split; complexity, batch-1
latency, where it ran, and a picture of ground truth beside predictions."""

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from pipelines import engines
from pipelines.config import load_params
from pipelines.confidence import bootstrap, deployment
from pipelines.evaluation import evaluate
from pipelines.inference import load_image, predict_split, preprocess
from pipelines.speed import latency, machine
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
    p.add_argument("--examples", type=Path, required=True,
                   help="jpg: test images, ground truth beside prediction (the report shows it)")
    p.add_argument("--example-count", type=int, default=4)
    p.add_argument("--show-threshold", type=float, default=0.3, help="the picture shows detections above this score")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    engine = params.templates[args.template].engine
    loaded = engines.load(engine, args.model)
    predictor = engines.torch_predictor(loaded.graph)
    results = predict_split(predictor, args.test, loaded.input_spec, loaded.score_threshold)
    metrics, per_class = evaluate(args.test, results)
    intervals, replicates = bootstrap(args.test, results, **params.confidence)
    metrics.update(intervals)
    val_results = predict_split(predictor, args.val, loaded.input_spec, loaded.score_threshold)
    metrics.update(deployment(args.val, val_results, args.test, results))
    first = json.loads(args.test.read_text())["images"][0]
    batch, _ = preprocess(load_image(args.test.parent / first["file_name"]), loaded.input_spec)
    speed = params.speed
    metrics["latency_ms"] = round(1000 * latency(predictor, batch, speed["warmup"], speed["repeats"]), 2)
    metrics.update(engines.complexity(engine, args.model))
    metrics.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), **machine())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2))
    args.per_class.write_text(json.dumps(per_class, indent=2))
    args.replicates.write_text(json.dumps(replicates))
    args.examples.parent.mkdir(parents=True, exist_ok=True)
    examples(json.loads(args.test.read_text()), args.test.parent, results, args.example_count,
             args.show_threshold).save(args.examples, quality=90)
    print(f"PyTorch on {args.test}: segm mAP {metrics['segm_map']:.2f} [{metrics['segm_map_low']:.2f}, "
          f"{metrics['segm_map_high']:.2f}], bbox mAP {metrics['bbox_map']:.2f}, F1 {metrics['deploy_f1']:.1f} at "
          f"score {metrics['deploy_threshold']}, "
          f"{metrics['gflops']} GFLOPs, {metrics['params_m']} M params, latency {metrics['latency_ms']} ms")


if __name__ == "__main__":
    main()
