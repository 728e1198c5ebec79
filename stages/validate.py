"""Stage validate: one exported IR on the same test split, measured by the same code as evaluate
(pipelines.scoring), plus OpenVINO's throughput.

It reads the IR alone: labels, input spec and score threshold come from the IR's runtime info.
"""

import argparse
import json
from pathlib import Path

from pipelines import legs
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_text_atomic
from pipelines.inference import InputSpec, split_inputs
from pipelines.ir import OpenVinoPredictor
from pipelines.scoring import score
from pipelines.speed import openvino_throughput


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ir", type=Path, required=True, help="model.xml written by the export stage")
    p.add_argument("--test", type=Path, required=True, help="prepared test split (COCO json)")
    p.add_argument("--val", type=Path, required=True, help="prepared validation split: picks the score threshold")
    p.add_argument("--out", type=Path, required=True, help="metrics json to write")
    p.add_argument("--replicates", type=Path, required=True, help="json to write the bootstrap replicates to")
    p.add_argument("--errors", type=Path, required=True, help="json to write the errors behind the mAP to")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    if (record := legs.read_stopped(args.ir)) is not None:
        legs.write_stopped(args.out, record)
        write_text_atomic(args.replicates, "{}")
        write_text_atomic(args.errors, "{}")
        print(f"{args.ir.parent}: {legs.describe(record)} by the race; not validated")
        return
    params = load_params()
    predictor = OpenVinoPredictor(args.ir)
    spec = InputSpec.from_dict(predictor.input_spec)
    scored = score(predictor, spec, predictor.score_threshold, args.test, args.val, params.confidence, params.speed)
    (first,) = split_inputs(args.test, spec, 1)  # the image latency is timed on
    throughput = openvino_throughput(args.ir, first, params.speed["throughput_seconds"], predictor.precision)
    metrics = {**scored.metrics, "throughput_fps": round(throughput, 2), "inference_precision": predictor.precision}
    write_text_atomic(args.out, json.dumps(metrics, indent=2))
    write_text_atomic(args.replicates, json.dumps(scored.replicates))
    write_text_atomic(args.errors, json.dumps(scored.errors))
    print(f"OpenVINO IR {args.ir} ({predictor.precision}) on {args.test}: segm mAP {metrics['segm_map']:.2f}, "
          f"bbox mAP {metrics['bbox_map']:.2f}, latency {metrics['latency_ms']} ms, "
          f"throughput {metrics['throughput_fps']} images/s")


if __name__ == "__main__":
    run(main)
