"""Stage report: gathers every selected cell's metrics into reports/ (recommendation, tables, plots, summary)."""

import argparse
from pathlib import Path

from pipelines import cells, racing, tide
from pipelines.cli import run
from pipelines.comparison import Comparison
from pipelines.config import RACE_OFF, load_params
from pipelines.confidence import SIZES
from pipelines.decision import decide
from pipelines.report import collect, document, tables
from pipelines.report.publish import publish


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", type=Path, required=True, help="folder with one <template>-<dataset>-seed<n>/ per cell")
    p.add_argument("--stats", type=Path, required=True, help="folder with one <dataset>.json of statistics")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    return p


def replayed_race(metrics: Path, selected: list, templates: list, datasets: list, seeds: list, recipes: dict,
                  race: dict, confidence_seed: int) -> racing.Race | None:
    """The race at its rung, replayed on the cells' validation records as stages/race.py decided it on the same
    epochs' records (None with the race off or a cell not trained yet)."""
    curves = collect.race_curves(metrics, selected)
    if not race["enabled"] or len(curves) < len(selected) or any(t not in recipes for t in templates):
        return None
    return racing.race(curves, templates, datasets, seeds, {t: recipes[t]["epochs"] for t in templates},
                       racing.settings(race, confidence_seed))


def inputs(metrics: Path, stats: Path, templates: list, datasets: list, seeds: list, precisions: list,
           confidence_seed: int, target_precision: str, budget_ms: float | None = None,
           race: dict | None = None) -> document.Inputs:
    """What the report is made of, read from the cells' files, and the one decision made from them. The templates
    the race stopped are compared in the race section, and listed as stopped in every other table."""
    race = race or RACE_OFF
    every_cell = cells.selected(templates, datasets, seeds)
    recipes, stopped = collect.recipes(metrics, every_cell), collect.stopped(metrics, every_cell)
    raced = replayed_race(metrics, every_cell, templates, datasets, seeds, recipes, race, confidence_seed)
    templates = [t for t in templates if t not in stopped]
    selected = cells.selected(templates, datasets, seeds)
    runtimes = [cells.PYTORCH] + [cells.runtime(p) for p in precisions]
    segm, bbox = (Comparison(collect.measured(metrics, templates, datasets, seeds, cells.PYTORCH, value),
                             templates, datasets, confidence_seed) for value in ("segm_map", "bbox_map"))
    by_size = {size: Comparison(collect.measured(metrics, templates, datasets, seeds, cells.PYTORCH,
                                                 f"segm_map_{size}"), templates, datasets, confidence_seed)
               for size in SIZES}
    daps = {e: Comparison(collect.measured_errors(metrics, templates, datasets, seeds, e), templates, datasets,
                          confidence_seed) for e in tide.TYPES}
    measured = {r: collect.measured(metrics, templates, datasets, seeds, r, "segm_map") for r in runtimes}
    runtime = cells.runtime(target_precision)
    target = Comparison(measured[runtime], templates, datasets, confidence_seed)
    long = collect.long_table(metrics, selected, runtimes)
    gflops = tables.complexity(long).set_index("template")["gflops"]
    made = decide(target, segm, runtime, collect.side_by_side(metrics), gflops, templates, budget_ms)
    return document.Inputs(
        long=long, every_long=collect.long_table(metrics, every_cell, runtimes) if stopped else long, segm=segm,
        bbox=bbox, ir_measured=measured,
        errors=collect.errors(metrics, selected, runtimes), daps=daps,
        deploy_errors=collect.deploy_errors(metrics, selected),
        classes=collect.per_class(metrics, selected), curves=collect.epochs(metrics, every_cell),
        stats=collect.stats(stats, datasets), recipes=recipes, selected=selected,
        metrics_dir=metrics, target=target, decision=made, by_size=by_size, race=race, raced=raced, stopped=stopped)


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    found = inputs(args.metrics, args.stats, params.run_templates, params.run_datasets, params.run_seeds,
                   params.export["precisions"], params.confidence["seed"], params.deploy["precision"],
                   params.deploy["latency_budget_ms"], params.race)
    publish(args.out, *document.build(found))
    pytorch = found.long[found.long["runtime"] == cells.PYTORCH]
    print(pytorch[["template", "dataset", "seed", "segm_map"]].to_string(index=False))
    choice = found.decision.overall
    print(f"recommended: {choice.template} (decided by {choice.decided_by}, at {found.decision.runtime})")
    print(f"report written to {args.out / 'benchmark.md'}")


if __name__ == "__main__":
    run(main)
