"""Stage train: fine-tunes one template on one prepared dataset; keeps the best validation epoch."""

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

from pipelines import engines
from pipelines.config import load_params


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--seed", type=int, required=True, help="training seed (one of `run.seeds`)")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (train.json, val.json)")
    p.add_argument("--out", type=Path, required=True, help="folder for model.pt")
    p.add_argument("--metrics", type=Path, required=True,
                   help="folder for train.json, train_log.csv and template.json (the recipe as trained)")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    spec = dataclasses.replace(load_params().templates[args.template], seed=args.seed)
    start = time.monotonic()
    print(f"training {args.template} ({spec.backbone}, {spec.input_size}px, {spec.epochs} epochs, seed {spec.seed}) "
          f"on {args.data}")
    result = engines.get(spec.engine).train(spec, args.data, args.out, log=lambda m: print(m, flush=True))
    args.metrics.mkdir(parents=True, exist_ok=True)
    history = result["history"]
    with open(args.metrics / "train_log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    summary = {"best_epoch": result["best_epoch"], "best_val_segm_map": result["best_val_segm_map"],
               "train_seconds": round(time.monotonic() - start, 1)}
    (args.metrics / "train.json").write_text(json.dumps(summary, indent=2))
    (args.metrics / "template.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    print(f"best epoch {summary['best_epoch']}: val segm mAP {summary['best_val_segm_map']:.2f}")


if __name__ == "__main__":
    main()
