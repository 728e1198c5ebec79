"""The comparison report: one tidy long table (template x dataset), reshaped into the tables people read."""

import json
import os
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

# Metrics file of a cell -> the columns of the long table it fills, with their prefix.
SOURCES = {"pytorch.json": "", "ir.json": "ir_", "train.json": ""}
LONG_COLUMNS = ["template", "dataset", "segm_map", "bbox_map", "ir_segm_map", "ir_bbox_map", "ir_minus_pytorch",
                "gflops", "params_m", "best_epoch", "train_seconds"]


def collect(metrics_dir: Path, templates: list, datasets: list) -> pd.DataFrame:
    """One row per template x dataset from the cells' metrics files; a missing file leaves its cells empty."""
    rows = []
    for template in templates:
        for dataset in datasets:
            row = {"template": template, "dataset": dataset}
            for name, prefix in SOURCES.items():
                path = metrics_dir / f"{template}-{dataset}" / name
                if path.is_file():
                    row.update({prefix + k: v for k, v in json.loads(path.read_text()).items()})
            rows.append(row)
    long = pd.DataFrame(rows).reindex(columns=LONG_COLUMNS + ["segm_map50", "bbox_map50"])
    long["ir_minus_pytorch"] = (long["ir_segm_map"] - long["segm_map"]).round(3)
    return long


def benchmark_table(long: pd.DataFrame, datasets: list) -> pd.DataFrame:
    """The seed's table: Model | GFLOPs | Params (M) | Average segm mAP | one column per dataset."""
    per_dataset = long.pivot(index="template", columns="dataset", values="segm_map").reindex(columns=datasets)
    complexity = long.groupby("template")[["gflops", "params_m"]].mean()
    table = pd.concat([complexity, per_dataset.mean(axis=1, skipna=False).rename("average"), per_dataset], axis=1)
    table.index.name = "model"
    return table.reset_index().rename(columns={"gflops": "GFLOPs", "params_m": "Params (M)",
                                               "average": "Average segm mAP"})


def ir_table(long: pd.DataFrame) -> pd.DataFrame:
    """PyTorch vs OpenVINO IR segm mAP per template x dataset."""
    table = long[["template", "dataset", "segm_map", "ir_segm_map", "ir_minus_pytorch", "bbox_map", "ir_bbox_map"]]
    return table.rename(columns={"segm_map": "PyTorch segm mAP", "ir_segm_map": "IR segm mAP",
                                 "ir_minus_pytorch": "IR - PyTorch", "bbox_map": "PyTorch bbox mAP",
                                 "ir_bbox_map": "IR bbox mAP"})


def dataset_table(stats_dir: Path, datasets: list) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        path = stats_dir / f"{dataset}.json"
        if not path.is_file():
            continue
        stats = json.loads(path.read_text())
        for split, s in stats["splits"].items():
            rows.append({"dataset": dataset, "split": split, "images": s["images"],
                         "instances": sum(s["instances"].values()), "crowd regions": sum(s["crowd_regions"].values()),
                         "skipped": len(s["skipped"]), "classes": len(stats["labels"])})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    # An empty cell means the stage that fills it has not run or failed: never a stale number.
    return table.to_markdown(index=False, floatfmt=".1f", missingval="not run")


def plot_segm(long: pd.DataFrame, path: Path) -> None:
    pivot = long.pivot(index="dataset", columns="template", values="segm_map")
    ax = pivot.plot.bar(figsize=(8, 4), rot=0)
    ax.set_ylabel("segm mAP@[.5:.95], %")
    ax.set_title("Test segm mAP per dataset")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def write_report(long: pd.DataFrame, stats_dir: Path, datasets: list, out_dir: Path) -> None:
    """Writes benchmark.md, benchmark.csv and segm_map.png into `out_dir`, each replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        "# Instance segmentation benchmark",
        "Segm and bbox mAP@[.5:.95] in percent on each dataset's test split; the average is the plain mean "
        "over datasets. GFLOPs are multiply-accumulates of one inference at the template's input size (the "
        "seed's convention), averaged over datasets (the class count changes the heads slightly).",
        "## Segm mAP", _markdown(benchmark_table(long, datasets)),
        "![segm mAP per dataset](segm_map.png)",
        "## Bbox mAP", _markdown(long.pivot(index="template", columns="dataset", values="bbox_map")
                                 .reindex(columns=datasets).reset_index()),
        "## OpenVINO IR against PyTorch", _markdown(ir_table(long)),
        "## Datasets", _markdown(dataset_table(stats_dir, datasets)),
    ]
    _atomic_write(out_dir / "benchmark.md", "\n\n".join(sections) + "\n")
    _atomic_write(out_dir / "benchmark.csv", long.to_csv(index=False))
    tmp = out_dir / ".segm_map.png.tmp.png"
    plot_segm(long, tmp)
    os.replace(tmp, out_dir / "segm_map.png")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
