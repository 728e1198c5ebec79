"""Stage validate: one exported IR on the same test split, scored by the same code as evaluate (intervals, the
F1-best threshold on the validation split and its precision / recall / F1 on test included); its speed.

It reads the IR alone: labels, input spec and score threshold come from the IR's runtime info.
"""

import argparse
import json
from pathlib import Path

from pipelines.config import load_params
from pipelines.confidence import bootstrap, deployment
from pipelines.evaluation import evaluate
from pipelines.inference import InputSpec, load_image, predict_split, preprocess
from pipelines.ir import OpenVinoPredictor
from pipelines.speed import latency, openvino_throughput


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ir", type=Path, required=True, help="model.xml written by the export stage")
    p.add_argument("--test", type=Path, required=True, help="prepared test split (COCO json)")
    p.add_argument("--val", type=Path, required=True, help="prepared validation split: picks the score threshold")
    p.add_argument("--out", type=Path, required=True, help="metrics json to write")
    p.add_argument("--replicates", type=Path, required=True, help="json to write the bootstrap replicates to")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    speed = params.speed
    predictor = OpenVinoPredictor(args.ir)
    spec = InputSpec.from_dict(predictor.input_spec)
    results = predict_split(predictor, args.test, spec, predictor.score_threshold)
    metrics, _ = evaluate(args.test, results)
    intervals, replicates = bootstrap(args.test, results, **params.confidence)
    metrics.update(intervals)
    val_results = predict_split(predictor, args.val, spec, predictor.score_threshold)
    metrics.update(deployment(args.val, val_results, args.test, results))
    first = json.loads(args.test.read_text())["images"][0]
    batch, _ = preprocess(load_image(args.test.parent / first["file_name"]), spec)
    metrics["latency_ms"] = round(1000 * latency(predictor, batch, speed["warmup"], speed["repeats"]), 2)
    metrics["throughput_fps"] = round(openvino_throughput(args.ir, batch, speed["throughput_seconds"],
                                                          predictor.precision), 2)
    metrics["inference_precision"] = predictor.precision
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2))
    args.replicates.write_text(json.dumps(replicates))
    print(f"OpenVINO IR {args.ir} ({predictor.precision}) on {args.test}: segm mAP {metrics['segm_map']:.2f}, "
          f"bbox mAP {metrics['bbox_map']:.2f}, latency {metrics['latency_ms']} ms, "
          f"throughput {metrics['throughput_fps']} images/s")


if __name__ == "__main__":
    main()
