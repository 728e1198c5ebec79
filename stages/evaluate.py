"""Stage evaluate: COCO segm and bbox mAP of a trained PyTorch model on the test split, and its complexity."""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pipelines import engines
from pipelines.config import load_params
from pipelines.evaluation import coco_metrics
from pipelines.inference import predict_split


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by the train stage")
    p.add_argument("--test", type=Path, required=True, help="prepared test split (COCO json)")
    p.add_argument("--out", type=Path, required=True, help="metrics json to write")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    engine = engines.get(load_params().templates[args.template].engine)
    loaded = engine.load(args.model)

    def predictor(batch: np.ndarray):
        with torch.no_grad():
            return [t.numpy() for t in loaded.graph(torch.from_numpy(batch))]

    results = predict_split(predictor, args.test, loaded.input_spec, loaded.score_threshold)
    metrics = {**coco_metrics(args.test, results), **engine.complexity(args.model)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2))
    print(f"PyTorch on {args.test}: segm mAP {metrics['segm_map']}, bbox mAP {metrics['bbox_map']}, "
          f"{metrics['gflops']} GFLOPs, {metrics['params_m']} M params")


if __name__ == "__main__":
    main()
