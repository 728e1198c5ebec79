"""Would racing have given the same answer, and for how much of the training? A replay over a finished grid.

    python -m benchmarks.racing --metrics metrics [--rungs 0.08 0.17 0.25 0.5] [--margins 0 1] [--etas 1 2 3] [--cases 0]

Reads any finished benchmark's metrics folder: every cell's per-epoch validation record (validation.json, written
by the train stage), its recipe as trained (the template's epochs) and its PyTorch test numbers with their
bootstrap replicates (evaluate). Then, for every case (a subset of at least `--min-templates` templates, of the
datasets and of at least `--min-seeds` seeds; `--cases N` draws N of them at random), it replays the racing policy
(pipelines.racing) on the validation curves, once per margin and eta (eta 1: stops only for a template behind
beyond both noises; above 1, halving too: at each rung only the best ceil(n / eta) go on), and compares the
template it recommends, the finisher with the best test average, with the full grid's, the best of all on test:

    agreeing   the same template, or one the full grid's test numbers cannot tell from it (the paired 95%
               interval of both noises of their difference reaches 0, as the report judges)
    spent      training epochs (and seconds) the race ran, over those of the full grid, summed over the cases
    regret     test points lost: the full grid's best average minus the raced pick's, with the paired 95%
               half-width of that difference beside it

A race never looks at the test split; the replay does, to score it.
"""

import argparse
import itertools
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pipelines import cells
from pipelines.comparison import Comparison, Measured
from pipelines.racing import Settings, curve, kept_by, race
from pipelines.report.collect import measured


@dataclass(frozen=True)
class Grid:
    templates: list
    datasets: list
    seeds: list
    epochs: dict      # template -> its schedule
    curves: dict      # (template, dataset, seed) -> [Epoch]
    test: dict        # (template, dataset) -> comparison.Measured of every seed's test segm mAP


def read_grid(metrics_dir: Path) -> Grid:
    """The complete template x dataset x seed grid found in `metrics_dir` (cell folders without a validation
    record or test numbers are left out, and so is any template or dataset they leave incomplete)."""
    found = {}
    for record in sorted(metrics_dir.glob(f"*/{cells.VALIDATION_FILE}")):
        name = re.fullmatch(r"(?P<template>[^-]+)-(?P<dataset>[^-]+)-seed(?P<seed>\d+)", record.parent.name)
        if name:
            found[(name["template"], name["dataset"], int(name["seed"]))] = record
    if not found:
        sys.exit(f"{metrics_dir}: no <template>-<dataset>-seed<n>/{cells.VALIDATION_FILE}; train a grid first "
                 "(make race-grid records one)")
    templates = sorted({t for t, _, _ in found})
    datasets = sorted({d for _, d, _ in found})
    seeds = sorted({s for _, _, s in found})
    test = measured(metrics_dir, templates, datasets, seeds, cells.PYTORCH, "segm_map")
    complete = {(t, d) for t in templates for d in datasets
                if (t, d) in test and all((t, d, s) in found for s in seeds)}
    templates = [t for t in templates if all((t, d) in complete for d in datasets)]
    if len(templates) < 2:
        sys.exit(f"{metrics_dir}: fewer than two templates have every dataset and seed with test numbers")
    curves, epochs = {}, {}
    for (t, d, s), record in found.items():
        if t in templates:
            curves[(t, d, s)] = curve(json.loads(record.read_text()))
            recipe = yaml.safe_load((record.parent / cells.RECIPE_FILE).read_text())
            epochs[t] = recipe["epochs"]
    return Grid(templates, datasets, seeds, epochs, curves, test)


@dataclass(frozen=True)
class Case:
    templates: tuple
    datasets: tuple
    seeds: tuple


def cases(grid: Grid, min_templates: int, min_seeds: int, count: int, seed: int) -> list:
    """Every subset of templates (at least `min_templates`), datasets (at least one) and seeds (at least
    `min_seeds`), or `count` of them drawn at random (0: all)."""
    def subsets(items, smallest):
        return [c for k in range(smallest, len(items) + 1) for c in itertools.combinations(items, k)]
    every = [Case(t, d, s) for t in subsets(grid.templates, min_templates) for d in subsets(grid.datasets, 1)
             for s in subsets(grid.seeds, min_seeds)]
    return sorted(random.Random(seed).sample(every, count), key=every.index) if 0 < count < len(every) else every


@dataclass(frozen=True)
class Outcome:
    full: str
    raced: str
    agreeing: bool
    regret: float
    half_width: float
    epochs: tuple      # (spent, full grid)
    seconds: tuple
    stopped: dict


def replay(grid: Grid, case: Case, settings: Settings) -> Outcome:
    templates, datasets, seeds = list(case.templates), list(case.datasets), list(case.seeds)
    raced = race(grid.curves, templates, datasets, seeds, grid.epochs, settings)
    subset = {(t, d): grid.test[(t, d)] for t in templates for d in datasets}
    seed_rows = [grid.seeds.index(s) for s in seeds]
    subset = {k: Measured(m.points[seed_rows], m.replicates[seed_rows]) for k, m in subset.items()}
    test = Comparison(subset, templates, datasets, settings.seed)
    full = max(templates, key=lambda t: test.point(t, "average"))
    pick = max(raced.finishers, key=lambda t: test.point(t, "average"))
    difference = test.difference(full, pick, "average")
    agreeing = pick == full or not difference["low"] > 0
    spent = total = spent_s = total_s = 0.0
    for t in templates:
        for d in datasets:
            for s in seeds:
                curve = grid.curves[(t, d, s)]
                ran = curve[:raced.epochs_spent(t, len(curve))]
                spent, total = spent + len(ran), total + len(curve)
                spent_s, total_s = spent_s + sum(e.seconds for e in ran), total_s + sum(e.seconds for e in curve)
    half = 0.0 if pick == full else (difference["high"] - difference["low"]) / 2
    return Outcome(full, pick, agreeing, difference["difference"], half, (spent, total), (spent_s, total_s),
                   dict(raced.stopped))


def floor(grid: Grid, case: Case) -> tuple:
    """(epoch, epochs spent, the full grid's) of the cheapest race that decides anything on `case`: every template
    trains to the first epoch at which the templates' validation averages differ (a warm-up that detects nothing
    tells none apart), then one alone trains on to the longest schedule. No policy that looks at validation mAP
    spends less; with no such epoch, the whole grid."""
    cells_per_template = len(case.datasets) * len(case.seeds)
    schedules = {t: grid.epochs[t] for t in case.templates}
    total = sum(schedules.values()) * cells_per_template
    for epoch in range(1, max(schedules.values())):
        averages = {round(float(np.mean([kept_by(grid.curves[(t, d, s)], min(epoch, schedules[t])).segm_map
                                         for d in case.datasets for s in case.seeds])), 6) for t in case.templates}
        if len(averages) > 1:
            spent = sum(min(epoch, e) for e in schedules.values()) + max(schedules.values()) - epoch
            return epoch, spent * cells_per_template, total
    return None, total, total


def floor_line(grid: Grid, chosen: list) -> str:
    """The floor over the cases, as the replay prints it."""
    floors = [floor(grid, c) for c in chosen]
    decided = sorted(e for e, _, _ in floors if e is not None)
    where = f"epoch {decided[len(decided) // 2]} in the median case, {decided[0]}-{decided[-1]} over the cases" \
        if decided else "no epoch in any case"
    share = sum(s for _, s, _ in floors) / sum(t for _, _, t in floors)
    return (f"floor: keeping one template after the first epoch where the templates' validation averages differ "
            f"({where}) would spend {share:.1%} of the epochs: no race that reads validation mAP spends less")


def summary(grid: Grid, chosen: list, settings: Settings) -> dict:
    outcomes = [replay(grid, c, settings) for c in chosen]
    worst = max(range(len(outcomes)), key=lambda i: outcomes[i].regret)
    stops = {t: sum(t in o.stopped for o, c in zip(outcomes, chosen)) for t in grid.templates}
    entered = {t: sum(t in c.templates for c in chosen) for t in grid.templates}
    return {"cases": len(outcomes),
            "same": np.mean([o.raced == o.full for o in outcomes]),
            "agreeing": np.mean([o.agreeing for o in outcomes]),
            "epochs": sum(o.epochs[0] for o in outcomes) / sum(o.epochs[1] for o in outcomes),
            "seconds": sum(o.seconds[0] for o in outcomes) / sum(o.seconds[1] for o in outcomes),
            "stops": {t: (stops[t], entered[t]) for t in grid.templates},
            "stopped_any": np.mean([bool(o.stopped) for o in outcomes]),
            "worst": outcomes[worst], "worst_case": chosen[worst]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", type=Path, default=cells.METRICS, help="a finished benchmark's metrics folder")
    p.add_argument("--rungs", type=float, nargs="+", default=[0.08, 0.17, 0.25, 0.5],
                   help="fractions of each template's schedule at which the race decides")
    p.add_argument("--margins", type=float, nargs="+", default=[0.0],
                   help="points; one replay per margin (a template is stopped when the whole paired interval of "
                        "leader minus it is above the margin)")
    p.add_argument("--etas", type=int, nargs="+", default=[1, 2, 3],
                   help="one replay per eta and margin: at each rung only the best ceil(n / eta) of its n templates "
                        "go on (1: no halving)")
    p.add_argument("--min-templates", type=int, default=3)
    p.add_argument("--min-seeds", type=int, default=2)
    p.add_argument("--cases", type=int, default=0, help="draw this many cases at random (0: every case)")
    p.add_argument("--seed", type=int, default=0, help="the comparisons' seed (confidence.seed) and the draw's")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    grid = read_grid(args.metrics)
    chosen = cases(grid, args.min_templates, args.min_seeds, args.cases, args.seed)
    print(f"grid: {len(grid.templates)} templates ({', '.join(f'{t} {grid.epochs[t]} epochs' for t in grid.templates)})"
          f" x {len(grid.datasets)} datasets ({', '.join(grid.datasets)}) x {len(grid.seeds)} seeds; "
          f"{len(chosen)} cases of >= {args.min_templates} templates, >= 1 dataset, >= {args.min_seeds} seeds; "
          f"rungs {args.rungs}")
    print(floor_line(grid, chosen))
    print("margin | eta | same as full | same or tied on test | epochs spent | seconds spent | cases with a stop | "
          "worst regret (its 95% half-width)")
    for margin, eta in itertools.product(args.margins, args.etas):
        found = summary(grid, chosen, Settings(tuple(args.rungs), margin, (), args.seed, eta))
        worst = found["worst"]
        print(f"{margin:6.1f} | {eta:3d} | {found['same']:11.1%} | {found['agreeing']:20.1%} | "
              f"{found['epochs']:12.1%} | {found['seconds']:13.1%} | {found['stopped_any']:17.1%} | "
              f"{worst.regret:.2f} points "
              f"({worst.half_width:.2f}): {worst.raced} instead of {worst.full} on "
              f"{'+'.join(found['worst_case'].datasets)}, seeds {list(found['worst_case'].seeds)}")
        print("       stopped: " + ", ".join(f"{t} in {n} of {m} cases" for t, (n, m) in found["stops"].items()))


if __name__ == "__main__":
    main()
