"""Stage report: gathers every template x dataset x seed's metrics into reports/ (tables, plots, summary)."""

import argparse
import json
from pathlib import Path

from pipelines.config import load_params
from pipelines.report import cell, collect, per_class, write_report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", type=Path, required=True, help="folder with one <template>-<dataset>-seed<n>/ per cell")
    p.add_argument("--stats", type=Path, required=True, help="folder with one <dataset>.json of statistics")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    return p


def recipes(metrics: Path, templates: list, datasets: list, seed: int) -> dict:
    """template -> the parameters its train stage recorded (template.json), from its first trained cell."""
    found = {}
    for template in templates:
        for dataset in datasets:
            path = metrics / cell(template, dataset, seed) / "template.json"
            if template not in found and path.is_file():
                found[template] = {k: v for k, v in json.loads(path.read_text()).items() if k != "seed"}
    return found


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    datasets, templates, seeds = list(params.datasets), params.run_templates, params.run_seeds
    precisions = params.export["precisions"]
    long = collect(args.metrics, templates, datasets, seeds, precisions)
    classes = per_class(args.metrics, templates, datasets, seeds)
    write_report(long, classes, args.metrics, args.stats, datasets, precisions,
                 recipes(args.metrics, templates, datasets, seeds[0]), args.out, params.confidence["seed"])
    print(long[["template", "dataset", "seed", "segm_map", "ir_segm_map"]].to_string(index=False))
    print(f"report written to {args.out / 'benchmark.md'}")


if __name__ == "__main__":
    main()
