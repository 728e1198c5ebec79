"""Stage export: converts a trained model's inference graph to OpenVINO IR (model.xml + model.bin)."""

import argparse
import json
from pathlib import Path

import torch

from pipelines import engines
from pipelines.config import load_params
from pipelines.export import export_ir
from pipelines.inference import load_image, preprocess


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by the train stage")
    p.add_argument("--sample", type=Path, required=True, help="a COCO split whose images are tried as trace inputs")
    p.add_argument("--out", type=Path, required=True, help="model.xml to write (model.bin beside it)")
    return p


def trace_input(graph, split_json: Path, input_spec):
    """The first image of the split on which the graph detects something: tracing needs detections."""
    images = json.loads(split_json.read_text())["images"]
    for image in images:
        batch, _ = preprocess(load_image(split_json.parent / image["file_name"]), input_spec)
        with torch.no_grad():
            if len(graph(torch.from_numpy(batch))[1]):
                return batch
    raise RuntimeError(f"the model detects nothing on any image of {split_json}; cannot trace it for export")


def main(args=None) -> None:
    args = parser().parse_args(args)
    loaded = engines.get(load_params().templates[args.template].engine).load(args.model, for_export=True)
    example = trace_input(loaded.graph, args.sample, loaded.input_spec)
    export_ir(loaded.graph, example, loaded.labels, loaded.input_spec.to_dict(), loaded.score_threshold, args.out)
    print(f"exported {args.model} to {args.out}")


if __name__ == "__main__":
    main()
