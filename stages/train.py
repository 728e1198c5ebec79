"""Stage train: fine-tunes one template on one prepared dataset with one seed; keeps the best validation
epoch; logs every epoch with DVCLive, whose summary (metrics.json) then holds the kept epoch and whose params
the recipe as trained, and writes every epoch's validation segm mAP with its bootstrap replicates
(validation.json, what a race compares). A run killed part-way continues from its last finished epoch."""

import argparse
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

from dvclive import Live

from pipelines import cells, engines, training
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_text_atomic


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--seed", type=int, required=True, help="training seed (one of `run.seeds`)")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (train.json, val.json)")
    p.add_argument("--out", type=Path, required=True, help="folder for model.pt (and resume.pt while training)")
    p.add_argument("--metrics", type=Path, required=True,
                   help="folder for training.json, validation.json and live/ (DVCLive: curves, summary, the recipe "
                        "as trained)")
    return p


def scalars(record: dict) -> dict:
    """An epoch record's numbers, what DVCLive logs (the validation replicates are validation.json's)."""
    return {k: v for k, v in record.items() if k != "epoch" and not isinstance(v, list)}


def validation_record(history: list) -> dict:
    """validation.json: per epoch, the validation segm mAP, its bootstrap replicates and the epoch's seconds."""
    return {"resamples": training.VALIDATION_RESAMPLES, "seed": training.VALIDATION_SEED,
            "epochs": [{"epoch": r["epoch"], "segm_map": r["val_segm_map"], "seconds": r["seconds"],
                        "replicates": r["val_segm_replicates"]} for r in history]}


def metric_name(name: str) -> str:
    """An epoch record's key as DVCLive's metric: losses and timings under train/, mAPs under val/."""
    return f"val/{name[4:]}" if name.startswith("val_") else f"train/{name}"


def epoch_logger(live: Live):
    """The loop's `on_epoch`: one DVCLive step per epoch."""
    def on_epoch(record: dict) -> None:
        live.step = record["epoch"]
        for name, value in scalars(record).items():
            live.log_metric(metric_name(name), value)
        live.next_step()
    return on_epoch


def keep_in_summary(live: Live, kept: dict) -> None:
    """DVCLive's summary as the kept epoch's record (it would otherwise hold the last epoch's)."""
    live.summary = {}
    for name, value in scalars(kept).items():
        group, metric = metric_name(name).split("/")
        live.summary.setdefault(group, {})[metric] = value
    live.step = kept["epoch"]


def main(args=None) -> None:
    args = parser().parse_args(args)
    # Under torchrun every process trains; process 0 alone logs and writes the stage's outputs.
    primary = int(os.environ.get("RANK", 0)) == 0
    # `tiling: auto` decided here from the training split, so that the recipe logged is the one trained.
    spec = training.resolve_tiling(load_params().templates[args.template], args.data,
                                   (lambda m: print(m, flush=True)) if primary else (lambda m: None))
    start = time.monotonic()
    if primary:
        print(f"training {args.template} ({spec.engine} engine, {spec.input_size}px, {spec.epochs} epochs, "
              f"seed {args.seed}) on {args.data}", flush=True)
    # DVCLive starts its folder afresh; a resumed run replays its finished epochs first, so each is logged once.
    live = Live(dir=str(args.metrics / cells.LIVE_FOLDER), dvcyaml=None, save_dvc_exp=False, report=None) if primary \
        else contextlib.nullcontext()
    with live:
        if primary:
            # The recipe as trained; the seed is the cell's (its name), not the recipe's.
            live.log_params(json.loads(json.dumps(dataclasses.asdict(spec))))  # lists, not tuples
        result = training.fit(spec, engines.adapter(spec.engine), args.data, args.out, seed=args.seed,
                              log=lambda m: print(m, flush=True),
                              on_epoch=epoch_logger(live) if primary else lambda record: None)
        if primary:
            keep_in_summary(live, next(r for r in result.history if r["epoch"] == result.best_epoch))
    if not primary:
        return
    summary = {"best_epoch": result.best_epoch, "best_val_segm_map": result.best_val_segm_map,
               "epochs_run": len(result.history), "train_seconds": round(time.monotonic() - start, 1)}
    write_text_atomic(args.metrics / cells.VALIDATION_FILE, json.dumps(validation_record(result.history)))
    write_text_atomic(args.metrics / cells.TRAINING_FILE, json.dumps(summary, indent=2))
    print(f"best epoch {summary['best_epoch']}: val segm mAP {summary['best_val_segm_map']:.2f}")


if __name__ == "__main__":
    run(main)
