"""Stage report: gathers every template x dataset's metrics into reports/benchmark.{md,csv}."""

import argparse
from pathlib import Path

from pipelines.config import load_params
from pipelines.report import collect, per_class, write_report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", type=Path, required=True, help="folder with one <template>-<dataset>/ per cell")
    p.add_argument("--stats", type=Path, required=True, help="folder with one <dataset>.json of statistics")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    datasets = list(params.datasets)
    long = collect(args.metrics, params.run_templates, datasets)
    classes = per_class(args.metrics, params.run_templates, datasets)
    write_report(long, classes, args.stats, datasets, params.export["precisions"], args.out)
    print(long[["template", "dataset", "segm_map", "ir_segm_map"]].to_string(index=False))
    print(f"report written to {args.out / 'benchmark.md'}")


if __name__ == "__main__":
    main()
