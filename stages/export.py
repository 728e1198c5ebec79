"""Stage export: converts a trained model's inference graph to OpenVINO IR, one folder per precision of
`export.precisions` (pipelines.precisions says what each is).

The conversion is deterministic: exported again (say, because `export.precisions` gained int8), an IR
that did not change is written byte for byte the same, so DVC does not re-validate it.

    <out>/fp32/model.{xml,bin}   the traced graph (always: the others derive from it)
    <out>/<precision>/model.{xml,bin}
"""

import argparse
from pathlib import Path

from pipelines import checkpoints, engines, legs
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.export import convert, write
from pipelines.inference import split_inputs
from pipelines.precisions import PRECISIONS
from pipelines.splits import TRAIN, VAL, split_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by the train stage")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (val.json traces, train.json calibrates)")
    p.add_argument("--out", type=Path, required=True, help="folder for one subfolder per precision")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    if (record := legs.read_stopped(args.model)) is not None:
        legs.write_stopped_ir(args.out, params.export["precisions"], record)
        print(f"{args.model}: {legs.describe(record)} by the race; not exported")
        return
    engine = params.templates[args.template].engine
    loaded = checkpoints.load(args.model, engines.adapter(engine))
    # Any image traces (pipelines.export.convert): a model that detects nothing on any of them exports too.
    (example,) = split_inputs(split_file(args.data, VAL), loaded.input_spec, 1, seed=0)
    model = convert(loaded.graph, example, loaded.labels, loaded.input_spec.to_dict(), loaded.score_threshold)
    precisions = ["fp32"] + [p for p in params.export["precisions"] if p != "fp32"]
    quantized = any(PRECISIONS[p].weights == "int8" for p in precisions)
    calibration = split_inputs(split_file(args.data, TRAIN), loaded.input_spec, params.export["calibration_images"],
                               seed=0) if quantized else []
    for precision in precisions:
        write(model, args.out, precision, calibration, engines.get(engine).INT8_FLOAT_SCOPES)
    print(f"exported {args.model} to {', '.join(precisions)} IRs in {args.out}")


if __name__ == "__main__":
    run(main)
