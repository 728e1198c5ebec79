"""The comparison report: one tidy long table (template x dataset), reshaped into the tables people read."""

import json
import os
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

PRECISIONS = ("fp32", "fp16", "int8")
# Metrics file of a cell -> prefix of its keys in the long table. FP32 IR keys read `ir_*`.
SOURCES = {"pytorch.json": "", "train.json": "", "ir_fp32.json": "ir_", "ir_fp16.json": "ir_fp16_",
           "ir_int8.json": "ir_int8_"}
LONG_COLUMNS = ["template", "dataset", "segm_map", "bbox_map", "ir_segm_map", "ir_bbox_map", "ir_minus_pytorch",
                "ir_fp16_segm_map", "ir_int8_segm_map", "int8_minus_fp32", "gflops", "params_m", "latency_ms",
                "ir_latency_ms", "ir_int8_latency_ms", "ir_throughput_fps", "ir_int8_throughput_fps",
                "best_epoch", "train_seconds", "segm_map50", "bbox_map50"]
INT8_TOLERANCE = 1.5  # segm mAP points INT8 may lose against FP32 before the report flags it


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
    long = pd.DataFrame(rows).reindex(columns=LONG_COLUMNS)
    long["ir_minus_pytorch"] = (long["ir_segm_map"] - long["segm_map"]).round(3)
    long["int8_minus_fp32"] = (long["ir_int8_segm_map"] - long["ir_segm_map"]).round(3)
    return long


def per_class(metrics_dir: Path, templates: list, datasets: list) -> pd.DataFrame:
    """Long table of per-class AP: template, dataset, class, segm_ap, segm_ap50, bbox_ap, bbox_ap50."""
    rows = []
    for template in templates:
        for dataset in datasets:
            path = metrics_dir / f"{template}-{dataset}" / "per_class.json"
            if path.is_file():
                for name, values in json.loads(path.read_text()).items():
                    rows.append({"template": template, "dataset": dataset, "class": name, **values})
    return pd.DataFrame(rows, columns=["template", "dataset", "class", "segm_ap", "segm_ap50", "bbox_ap", "bbox_ap50"])


def benchmark_table(long: pd.DataFrame, datasets: list, value: str = "segm_map") -> pd.DataFrame:
    """The seed's table: Model | GFLOPs | Params (M) | Average | one column per dataset."""
    per_dataset = long.pivot(index="template", columns="dataset", values=value).reindex(columns=datasets)
    complexity = long.groupby("template")[["gflops", "params_m"]].mean()
    # A missing dataset leaves the average empty: an average over fewer datasets would not compare.
    table = pd.concat([complexity, per_dataset.mean(axis=1, skipna=False).rename("average"), per_dataset], axis=1)
    table.index.name = "model"
    label = "segm" if value.startswith("segm") else "bbox"
    return table.reset_index().rename(columns={"gflops": "GFLOPs", "params_m": "Params (M)",
                                               "average": f"Average {label} mAP"})


def ir_table(long: pd.DataFrame, precisions: list) -> pd.DataFrame:
    """PyTorch against each exported IR precision, segm mAP per template x dataset."""
    columns = ["template", "dataset", "segm_map", "ir_segm_map", "ir_minus_pytorch"]
    columns += ["ir_fp16_segm_map"] * ("fp16" in precisions) + ["ir_int8_segm_map", "int8_minus_fp32"] * ("int8" in precisions)
    table = long[columns].copy()
    if "int8" in precisions:
        lost = table["int8_minus_fp32"] < -INT8_TOLERANCE
        table["note"] = lost.map({True: f"INT8 loses more than {INT8_TOLERANCE} points", False: ""})
    return table.rename(columns={"segm_map": "PyTorch", "ir_segm_map": "IR FP32", "ir_minus_pytorch": "FP32 - PyTorch",
                                 "ir_fp16_segm_map": "IR FP16", "ir_int8_segm_map": "IR INT8",
                                 "int8_minus_fp32": "INT8 - FP32"})


def speed_table(long: pd.DataFrame, precisions: list) -> pd.DataFrame:
    """Per template, medians over its datasets: batch-1 latency, OpenVINO throughput, and the ratios."""
    int8 = "int8" in precisions
    columns = ["latency_ms", "ir_latency_ms"] + ["ir_int8_latency_ms"] * int8 + ["ir_throughput_fps"]
    table = long.groupby("template")[columns + ["ir_int8_throughput_fps"] * int8].median()
    table["FP32 speed-up over PyTorch"] = table["latency_ms"] / table["ir_latency_ms"]
    if int8:
        table["INT8 speed-up over FP32"] = table["ir_latency_ms"] / table["ir_int8_latency_ms"]
    return table.reset_index().rename(columns={
        "latency_ms": "PyTorch latency (ms)", "ir_latency_ms": "FP32 latency (ms)",
        "ir_int8_latency_ms": "INT8 latency (ms)", "ir_throughput_fps": "FP32 throughput (img/s)",
        "ir_int8_throughput_fps": "INT8 throughput (img/s)"})


def _stats(stats_dir: Path, datasets: list) -> dict:
    """dataset -> the statistics `prepare` wrote, for the datasets that have been prepared."""
    paths = {dataset: stats_dir / f"{dataset}.json" for dataset in datasets}
    return {dataset: json.loads(path.read_text()) for dataset, path in paths.items() if path.is_file()}


def dataset_table(stats: dict) -> pd.DataFrame:
    """One row per dataset x split: images, objects, crowd regions and what was converted or left out."""
    rows = []
    for dataset, data in stats.items():
        for split, s in data["splits"].items():
            rows.append({"dataset": dataset, "split": split, "images": s["images"],
                         "instances": sum(s["instances"].values()), "crowd regions": sum(s["crowd_regions"].values()),
                         "images without objects": s["images_without_objects"], "converted": len(s["converted"]),
                         "skipped objects": len(s["skipped_objects"])})
        rows.append({"dataset": dataset, "split": "(left out)", "images": len(data["skipped_images"])})
    return pd.DataFrame(rows)


def class_table(stats: dict) -> pd.DataFrame:
    """Instances (and crowd regions) per dataset x class, one column per split."""
    rows = [{"dataset": dataset, "class": label, "split": split, "count": s[kind].get(label, 0), "kind": kind}
            for dataset, data in stats.items() for split, s in data["splits"].items()
            for label in data["labels"] for kind in ("instances", "crowd_regions")]
    long = pd.DataFrame(rows)
    if long.empty:
        return long
    long["column"] = long["split"] + long["kind"].map({"instances": "", "crowd_regions": " crowd"})
    order = [f"{split}{suffix}" for suffix in ("", " crowd") for split in ("train", "val", "test")]
    table = long.pivot_table(index=["dataset", "class"], columns="column", values="count", sort=False)
    return table.reindex(columns=[c for c in order if c in table.columns]).astype(int).reset_index()


def left_out_table(stats: dict, limit: int = 20) -> pd.DataFrame:
    """Every image or object converted or left out, with the reason; at most `limit` rows per dataset."""
    rows = []
    for dataset, data in stats.items():
        entries = [(f"(subset {e['subset']})", "skipped image", e) for e in data["skipped_images"]]
        for split, s in data["splits"].items():
            entries += [(split, what, e) for key, what in (("skipped_objects", "skipped object"),
                                                           ("converted", "converted image"))
                        for e in s[key]]
        for split, what, entry in entries[:limit]:
            rows.append({"dataset": dataset, "split": split, "what": what, "image": entry["image"],
                         "reason": entry["reason"]})
        if len(entries) > limit:
            rows.append({"dataset": dataset, "split": "", "what": f"{len(entries) - limit} more",
                         "image": "", "reason": f"listed in data/stats/{dataset}.json"})
    return pd.DataFrame(rows, columns=["dataset", "split", "what", "image", "reason"])


def _markdown(table: pd.DataFrame, floatfmt=".1f") -> str:
    # An empty cell means the stage that fills it has not run or failed: never a stale number.
    # tabulate's missingval covers None only, so NaN (a missing metrics file) becomes None first.
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=floatfmt,
                                                                        missingval="not run")


def plot_segm(long: pd.DataFrame, path: Path) -> None:
    pivot = long.pivot(index="dataset", columns="template", values="segm_map")
    ax = pivot.plot.bar(figsize=(8, 4), rot=0)
    ax.set_ylabel("segm mAP@[.5:.95], %")
    ax.set_title("Test segm mAP per dataset")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def write_report(long: pd.DataFrame, classes: pd.DataFrame, stats_dir: Path, datasets: list, precisions: list,
                 out_dir: Path) -> None:
    """Writes benchmark.md, benchmark.csv and segm_map.png into `out_dir`, each replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        "# Instance segmentation benchmark",
        "Segm and bbox mAP@[.5:.95] in percent on each dataset's test split; the average is the plain mean "
        "over datasets. GFLOPs are multiply-accumulates of one inference at the template's input size (the "
        "seed's convention), averaged over datasets (the class count changes the heads slightly). "
        "A cell reading `not run` belongs to a stage that has not run or failed.",
        "## Segm mAP", _markdown(benchmark_table(long, datasets)),
        "![segm mAP per dataset](segm_map.png)",
        "## Bbox mAP", _markdown(benchmark_table(long, datasets, "bbox_map")),
        "## OpenVINO IR against PyTorch",
        "Segm mAP of each exported IR (the precisions `export.precisions` selects), computed with the same "
        "pre/post-processing and metric code as PyTorch's.",
        _markdown(ir_table(long, precisions)),
        "## Speed",
        "On this machine's CPU at each template's input size: batch-1 latency is the median of repeated runs "
        "after warm-up; OpenVINO throughput runs asynchronous requests under its throughput hint. Medians over "
        "datasets.",
        _markdown(speed_table(long, precisions), floatfmt=".2f"),
        "## Per-class segm AP",
    ]
    for dataset in datasets:
        table = classes[classes["dataset"] == dataset].pivot(index="class", columns="template", values="segm_ap")
        if not table.empty:
            sections += [f"### {dataset}", _markdown(table.reset_index())]
    stats = _stats(stats_dir, datasets)
    left_out = left_out_table(stats)
    sections += ["## Datasets",
                 "Images and objects per split after `prepare` (train and val are what training saw; test is "
                 "what every number above is measured on). Crowd regions are ignored the COCO way in evaluation.",
                 _markdown(dataset_table(stats)),
                 "### Instances per class", _markdown(class_table(stats)),
                 "### Converted and left out",
                 _markdown(left_out) if not left_out.empty else "Nothing: every image and object was used as shipped."]
    _atomic_write(out_dir / "benchmark.md", "\n\n".join(sections) + "\n")
    _atomic_write(out_dir / "benchmark.csv", long.to_csv(index=False))
    tmp = out_dir / ".segm_map.tmp.png"
    plot_segm(long, tmp)
    os.replace(tmp, out_dir / "segm_map.png")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
