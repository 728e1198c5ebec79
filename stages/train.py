"""Stage train: fine-tunes one template on one prepared dataset with one seed; keeps the best validation
epoch; logs every epoch with DVCLive, whose summary (metrics.json) then holds the kept epoch and whose params
the recipe as trained, and writes every epoch's validation segm mAP with its bootstrap replicates
(validation.json, what a race compares). A run killed part-way continues from its last finished epoch.

With a race (params.yaml's `race`, pipelines/racing.py), a cell trains in two legs: `--rung-out` trains to the
rung and keeps resume.pt there; after the race's verdict (stages/race.py), `--rung --verdict` goes on from that
checkpoint to the end, exactly as an uninterrupted run, or writes the stopped record (pipelines/legs.py)."""

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from dvclive import Live

from pipelines import cells, engines, legs, training
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_text_atomic


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--seed", type=int, required=True, help="training seed (one of `run.seeds`)")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (train.json, val.json)")
    p.add_argument("--out", type=Path, help="folder for model.pt (and resume.pt while training)")
    p.add_argument("--metrics", type=Path,
                   help="folder for training.json, validation.json and live/ (DVCLive: curves, summary, the recipe "
                        "as trained)")
    p.add_argument("--rung-out", type=Path,
                   help="the race's first leg: train to the rung (race.rung of the schedule) into this folder "
                        "(resume.pt, training.json, validation.json, live/)")
    p.add_argument("--rung", type=Path, help="after the first leg: its folder, whose resume.pt training goes on from")
    p.add_argument("--verdict", type=Path, help="after the first leg: the race's verdict for this template")
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


def train(spec, args, out: Path, metrics: Path, until_epoch: int | None = None, before: dict | None = None) -> dict:
    """Trains (or goes on training) `spec` into `out` and `metrics`; returns training.json's record. `before`: the
    rung's record this run continues (its seconds count)."""
    primary = int(os.environ.get("RANK", 0)) == 0  # under torchrun process 0 alone logs and writes the outputs
    start = time.monotonic()
    if primary:
        print(f"training {args.template} ({spec.engine} engine, {spec.input_size}px, {spec.epochs} epochs"
              + (f", to epoch {until_epoch} for the race's verdict" if until_epoch else "")
              + f", seed {args.seed}) on {args.data}", flush=True)
    # DVCLive starts its folder afresh; a resumed run replays its finished epochs first, so each is logged once.
    live = Live(dir=str(metrics / cells.LIVE_FOLDER), dvcyaml=None, save_dvc_exp=False, report=None) if primary \
        else contextlib.nullcontext()
    with live:
        if primary:
            # The recipe as trained; the seed is the cell's (its name), not the recipe's.
            live.log_params(json.loads(json.dumps(dataclasses.asdict(spec))))  # lists, not tuples
        result = training.fit(spec, engines.adapter(spec.engine), args.data, out, seed=args.seed,
                              log=lambda m: print(m, flush=True),
                              on_epoch=epoch_logger(live) if primary else lambda record: None, until_epoch=until_epoch)
        if primary:
            keep_in_summary(live, next(r for r in result.history if r["epoch"] == result.best_epoch))
    summary = {"best_epoch": result.best_epoch, "best_val_segm_map": result.best_val_segm_map,
               "epochs_run": len(result.history), "epochs": spec.epochs,
               "train_seconds": round(time.monotonic() - start + (before or {}).get("train_seconds", 0), 1)}
    if primary:
        write_text_atomic(metrics / cells.VALIDATION_FILE, json.dumps(validation_record(result.history)))
        write_text_atomic(metrics / cells.TRAINING_FILE, json.dumps(summary, indent=2))
        print(f"best epoch {summary['best_epoch']}: val segm mAP {summary['best_val_segm_map']:.2f}")
    return summary


def to_the_rung(spec, args, enabled: bool, rung: float) -> None:
    """The race's first leg: `rung` of the schedule into the rung folder (with the race off, a note there)."""
    args.rung_out.mkdir(parents=True, exist_ok=True)
    if not enabled:
        write_text_atomic(args.rung_out / cells.TRAINING_FILE, json.dumps({"race": "off"}))
        print(f"race off: {args.template} trains its whole schedule in the train stage")
        return
    train(spec, args, args.rung_out, args.rung_out, until_epoch=legs.rung_epoch(rung, spec.epochs))


def copy_rung_records(rung: Path, metrics: Path, extra: dict | None = None) -> None:
    """The rung's validation record, DVCLive folder and training record (with `extra` added) into `metrics`."""
    metrics.mkdir(parents=True, exist_ok=True)
    shutil.copytree(rung / cells.LIVE_FOLDER, metrics / cells.LIVE_FOLDER, dirs_exist_ok=True)
    shutil.copyfile(rung / cells.VALIDATION_FILE, metrics / cells.VALIDATION_FILE)
    record = {**json.loads((rung / cells.TRAINING_FILE).read_text()), **(extra or {})}
    write_text_atomic(metrics / cells.TRAINING_FILE, json.dumps(record, indent=2))


def after_the_rung(spec, args) -> None:
    """The rest of the schedule as the race's verdict says: from scratch (race off), on from the rung's checkpoint,
    or nothing but the stopped record."""
    verdict = json.loads(args.verdict.read_text())
    if verdict.get("race") == "off":
        train(spec, args, args.out, args.metrics)
    elif legs.STOPPED in verdict:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {**verdict, "rung_checkpoint": str(args.rung / cells.RESUME_FILE)}
        legs.write_stopped(args.out / cells.MODEL_FILE, record)
        copy_rung_records(args.rung, args.metrics, record)
        print(f"{args.template} {legs.describe(record)} by the race: {record['behind']['difference']:.2f} points "
              f"[{record['behind']['low']:.2f}, {record['behind']['high']:.2f}] behind {record['leader']} on the "
              f"validation average ({record.get('why', 'behind')}); not trained further")
    elif (args.rung / cells.MODEL_FILE).is_file():  # the whole schedule fit in the first leg (or it stopped early)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.rung / cells.MODEL_FILE, args.out / cells.MODEL_FILE)
        copy_rung_records(args.rung, args.metrics)
    else:
        # resume.pt is where a killed run goes on from: the rung's, copied, goes on exactly as an uninterrupted run.
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.rung / cells.RESUME_FILE, args.out / cells.RESUME_FILE)
        train(spec, args, args.out, args.metrics, before=json.loads((args.rung / cells.TRAINING_FILE).read_text()))


def main(args=None) -> None:
    args = parser().parse_args(args)
    primary = int(os.environ.get("RANK", 0)) == 0
    params = load_params()
    # `tiling: auto` decided here from the training split, so that the recipe logged is the one trained.
    spec = training.resolve_tiling(params.templates[args.template], args.data,
                                   (lambda m: print(m, flush=True)) if primary else (lambda m: None))
    if args.rung_out:
        to_the_rung(spec, args, params.race["enabled"], params.race["rung"])
    elif args.rung and args.verdict and args.out and args.metrics:
        after_the_rung(spec, args)
    elif args.out and args.metrics and not (args.rung or args.verdict):
        train(spec, args, args.out, args.metrics)
    else:
        raise SystemExit("give --rung-out (the race's first leg), or --out and --metrics, with --rung and --verdict "
                         "after a race's first leg")


if __name__ == "__main__":
    run(main)
