"""Stage validate: the OpenVINO IR on the same test split, scored by the same metric code as evaluate.

It reads the IR alone: labels, input spec and score threshold come from the IR's runtime info.
"""

import argparse
import json
from pathlib import Path

from pipelines.evaluation import coco_metrics
from pipelines.export import OpenVinoPredictor
from pipelines.inference import InputSpec, predict_split


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ir", type=Path, required=True, help="model.xml written by the export stage")
    p.add_argument("--test", type=Path, required=True, help="prepared test split (COCO json)")
    p.add_argument("--out", type=Path, required=True, help="metrics json to write")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    predictor = OpenVinoPredictor(args.ir)
    spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in predictor.input_spec.items()})
    metrics = coco_metrics(args.test, predict_split(predictor, args.test, spec, predictor.score_threshold))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2))
    print(f"OpenVINO IR on {args.test}: segm mAP {metrics['segm_map']}, bbox mAP {metrics['bbox_map']}")


if __name__ == "__main__":
    main()
