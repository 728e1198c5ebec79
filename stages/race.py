"""Stage race: the race's verdict for one template at the rung (pipelines/racing.py), from the records of every
selected cell trained to the rung (race/rung/<cell>/: validation.json, training.json).

    race/verdict/<template>.json   {"continues": true}, or the stopped record (pipelines/legs.py); with the race
                                   off, {"race": "off"}

Each template's verdict is its own stage and file, and a template that goes on gets the same file whatever the
others measured, so that a change to one template reruns another's later training only if its verdict flips.
Nothing here imports torch: a verdict takes well under a second.
"""

import argparse
import json
from pathlib import Path

from pipelines import cells, racing
from pipelines.cli import run
from pipelines.config import load_params
from pipelines.files import write_text_atomic


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", required=True, help="key under `templates` in params.yaml")
    p.add_argument("--rungs", type=Path, required=True, help="folder with one <template>-<dataset>-seed<n>/ per cell")
    p.add_argument("--out", type=Path, required=True, help="the verdict json to write")
    return p


def rung_records(folder: Path, templates: list, datasets: list, seeds: list) -> tuple[dict, dict]:
    """({(template, dataset, seed): [racing.Epoch]}, {template: its epochs}) from the cells' rung records."""
    curves, epochs = {}, {}
    for cell in cells.selected(templates, datasets, seeds):
        record = folder / cell.name
        try:
            curves[(cell.template, cell.dataset, cell.seed)] = racing.curve(
                json.loads((record / cells.VALIDATION_FILE).read_text()))
            epochs[cell.template] = json.loads((record / cells.TRAINING_FILE).read_text())["epochs"]
        except (FileNotFoundError, KeyError) as error:
            raise SystemExit(f"{record}: no rung record ({error}); `dvc repro` trains every cell to the rung first")
    return curves, epochs


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    if not params.race["enabled"]:
        write_text_atomic(args.out, json.dumps({"template": args.template, "race": "off"}, indent=2))
        return
    templates, datasets, seeds = params.run_templates, params.run_datasets, params.run_seeds
    curves, epochs = rung_records(args.rungs, templates, datasets, seeds)
    outcome = racing.race(curves, templates, datasets, seeds, epochs,
                          racing.settings(params.race, params.confidence["seed"]))
    found = racing.verdict(outcome, args.template, epochs[args.template])
    write_text_atomic(args.out, json.dumps(found, indent=2))
    for fraction, rows in outcome.rungs:
        for row in rows:
            if row.template == args.template:
                print(f"{args.template} at epoch {row.epoch} ({fraction:.0%} of its schedule): validation average "
                      f"{row.average:.2f} [{row.low:.2f}, {row.high:.2f}]"
                      + (f", {row.behind['difference']:.2f} [{row.behind['low']:.2f}, {row.behind['high']:.2f}] "
                         "behind the leader" if row.behind else ", the leader"))
    print(f"{args.template}: " + (f"stopped ({found['why']})" if "stopped_at_epoch" in found else "goes on"))


if __name__ == "__main__":
    run(main)
