"""The comparison report: one tidy long table (template x dataset), reshaped into the tables people read."""

import json
import os
import shutil
from pathlib import Path

import matplotlib
import pandas as pd
import yaml

from pipelines.comparison import Comparison, load_replicates, recommendation
from pipelines.config import PRECISIONS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

# Metrics files of a cell -> prefix of their keys in the long table; each IR precision adds its own
# file (`ir_<precision>.json`, keys `ir_<precision>_*`; FP32's read `ir_*`).
SOURCES = {"pytorch.json": "", "train.json": ""}
PICTURE = "predictions.jpg"  # evaluate's picture in each cell's metrics folder; the report copies it
BASE_COLUMNS = ["template", "dataset", "seed", "segm_map", "segm_map_low", "segm_map_high", "bbox_map", "bbox_map_low",
                "bbox_map_high", "segm_map50", "bbox_map50", "deploy_threshold", "deploy_precision", "deploy_recall",
                "deploy_f1", "gflops", "params_m", "latency_ms", "best_epoch", "train_seconds", "finished", "cpu",
                "cpu_cores"]
DEPLOY = ["deploy_threshold", "deploy_precision", "deploy_recall", "deploy_f1"]
# The long table's columns of each IR precision; a precision `export.precisions` does not list has none.
PRECISION_COLUMNS = {
    "fp32": ["ir_segm_map", "ir_segm_map_low", "ir_segm_map_high", "ir_bbox_map", "ir_minus_pytorch", "ir_latency_ms",
             "ir_throughput_fps"] + [f"ir_{c}" for c in DEPLOY],
    "bf16": ["ir_bf16_segm_map", "ir_bf16_segm_map_low", "ir_bf16_segm_map_high", "bf16_minus_fp32",
             "ir_bf16_latency_ms", "ir_bf16_throughput_fps", "ir_bf16_inference_precision"]
            + [f"ir_bf16_{c}" for c in DEPLOY],
    "fp16": ["ir_fp16_segm_map", "ir_fp16_segm_map_low", "ir_fp16_segm_map_high"] + [f"ir_fp16_{c}" for c in DEPLOY],
    "int8": ["ir_int8_segm_map", "ir_int8_segm_map_low", "ir_int8_segm_map_high", "int8_minus_fp32",
             "ir_int8_latency_ms", "ir_int8_throughput_fps"] + [f"ir_int8_{c}" for c in DEPLOY],
}
BOOTSTRAP_FILE = "pytorch_bootstrap.json"  # evaluate's replicates in each cell's metrics folder
TEXT_COLUMNS = ["finished", "cpu", "cpu_cores", "ir_bf16_inference_precision"]
INT8_TOLERANCE = 1.5  # segm mAP points INT8 may lose against FP32 before the report flags it


def cell(template: str, dataset: str, seed: int) -> str:
    """The folder name of one template x dataset x seed under metrics/ and models/ (as in dvc.yaml)."""
    return f"{template}-{dataset}-seed{seed}"


def cells(templates: list, datasets: list, seeds: list):
    """Every (template, dataset, seed) the run selects, in report order."""
    return ((t, d, s) for t in templates for d in datasets for s in seeds)


def ir_prefix(precision: str) -> str:
    return "ir_" if precision == "fp32" else f"ir_{precision}_"


def long_columns(precisions: list) -> list:
    return BASE_COLUMNS + [c for p in PRECISIONS if p in precisions for c in PRECISION_COLUMNS[p]]


def collect(metrics_dir: Path, templates: list, datasets: list, seeds: list, precisions: list) -> pd.DataFrame:
    """One row per template x dataset x seed from the cells' metrics files; a missing file leaves its cells empty.

    Only the IR precisions in `precisions` are read: an IR left from an earlier run with other settings
    never reaches the report."""
    sources = {**SOURCES, **{f"ir_{p}.json": ir_prefix(p) for p in precisions}}
    rows = []
    for template, dataset, seed in cells(templates, datasets, seeds):
        row = {"template": template, "dataset": dataset, "seed": seed}
        for name, prefix in sources.items():
            path = metrics_dir / cell(template, dataset, seed) / name
            if path.is_file():
                row.update({prefix + k: v for k, v in json.loads(path.read_text()).items()})
        rows.append(row)
    long = pd.DataFrame(rows).reindex(columns=long_columns(precisions))
    for precision, difference, reference in (("fp32", "ir_minus_pytorch", "segm_map"),
                                             ("bf16", "bf16_minus_fp32", "ir_segm_map"),
                                             ("int8", "int8_minus_fp32", "ir_segm_map")):
        if precision in precisions:
            long[difference] = (long[f"{ir_prefix(precision)}segm_map"] - long[reference]).round(3)
    return long


def seed_means(long: pd.DataFrame) -> pd.DataFrame:
    """One row per template x dataset: each number averaged over seeds (empty if any seed is missing)."""
    numbers = long.drop(columns=["seed"] + [c for c in TEXT_COLUMNS if c in long.columns])
    return numbers.groupby(["template", "dataset"], sort=False).agg(lambda v: v.mean(skipna=False)).reset_index()


def per_class(metrics_dir: Path, templates: list, datasets: list, seeds: list) -> pd.DataFrame:
    """Long table of per-class AP averaged over seeds: template, dataset, class, segm_ap, segm_ap50, bbox_ap, bbox_ap50."""
    rows = []
    for template, dataset, seed in cells(templates, datasets, seeds):
        path = metrics_dir / cell(template, dataset, seed) / "per_class.json"
        if path.is_file():
            for name, values in json.loads(path.read_text()).items():
                rows.append({"template": template, "dataset": dataset, "class": name, **values})
    columns = ["template", "dataset", "class", "segm_ap", "segm_ap50", "bbox_ap", "bbox_ap50"]
    return pd.DataFrame(rows, columns=columns).groupby(columns[:3], sort=False).mean().reset_index()


def averages(long: pd.DataFrame, datasets: list, value: str = "segm_map") -> pd.DataFrame:
    """Per template x seed: `value` per dataset (columns) and their average (empty if a dataset is missing)."""
    wide = long.pivot_table(index=["template", "seed"], columns="dataset", values=value, dropna=False, sort=False)
    wide = wide.reindex(columns=datasets)
    wide["average"] = wide.mean(axis=1, skipna=False)
    return wide


def comparison(long: pd.DataFrame, metrics_dir: Path, datasets: list, seed: int, value: str = "segm_map") -> Comparison:
    """The paired-bootstrap view of `value` (segm_map or bbox_map) over the selected templates and datasets."""
    points = seed_means(long).pivot(index="template", columns="dataset", values=value)
    points = points.reindex(index=list(long["template"].unique()), columns=datasets)
    folders = {(t, d): [cell(t, d, s) for s in sorted(long["seed"].unique())]
               for t in points.index for d in datasets}
    return Comparison(points, load_replicates(metrics_dir, folders, BOOTSTRAP_FILE, value), seed)


def _with_interval(values: pd.Series, low: float, high: float):
    """The mean over seeds ('mean ± std' with two or more) and its 95% interval, as text; NaN if a seed is missing."""
    if values.isna().any():
        return float("nan")
    text = f"{values.mean():.1f}" if len(values) < 2 else f"{values.mean():.1f} ± {values.std():.1f}"
    return text if pd.isna(low) else f"{text} [{low:.1f}, {high:.1f}]"


def benchmark_table(long: pd.DataFrame, datasets: list, compared: Comparison, value: str = "segm_map") -> pd.DataFrame:
    """The seed's table: Model | GFLOPs | Params (M) | Average | one column per dataset; each number the mean over
    seeds (± std with several) and its 95% bootstrap interval."""
    wide = averages(long, datasets, value)
    spread = pd.DataFrame({column: {template: _with_interval(wide.loc[template][column],
                                                             *compared.interval(template, column))
                                    for template in wide.index.get_level_values("template").unique()}
                           for column in ["average"] + datasets})
    complexity = long.groupby("template", sort=False)[["gflops", "params_m"]].mean()
    table = pd.concat([complexity, spread[["average"]], spread[datasets]], axis=1)
    table.index.name = "model"
    label = "segm" if value.startswith("segm") else "bbox"
    return table.reset_index().rename(columns={"gflops": "GFLOPs", "params_m": "Params (M)",
                                               "average": f"Average {label} mAP"})


def summary(long: pd.DataFrame, datasets: list, compared: Comparison) -> dict:
    """What `dvc exp show` lists: per template, the seed-mean average and per-dataset test segm mAP, with the
    bounds of their 95% intervals."""
    means = averages(long, datasets).groupby(level="template", sort=False).mean()
    found = {}
    for template, row in means.iterrows():
        found[template] = {}
        for column, name in [("average", "segm_map_average")] + [(d, f"segm_map_{d}") for d in datasets]:
            low, high = compared.interval(template, column)
            found[template].update({name: _number(row[column]), f"{name}_low": _number(low),
                                    f"{name}_high": _number(high)})
    return found


def how_sure_tables(compared: Comparison) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranks table and the paired comparisons, formatted."""
    ranks = compared.ranks_table()
    ranks["Average segm mAP [95%]"] = [f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in
                                      zip(ranks["average"], ranks["low"], ranks["high"])]
    ranks = ranks.drop(columns=["average", "low", "high"]).rename(columns={"wins": "datasets won"})
    ranks.index.name = "template"
    pairs = compared.pairs_table()
    pairs["A - B [95%]"] = [f"{d:+.1f} [{lo:.1f}, {hi:.1f}]" for d, lo, hi in
                            zip(pairs["difference"], pairs["low"], pairs["high"])]
    pairs["P(A > B)"] = pairs["p_better"].astype(float).round(3)
    pairs["distinguishable"] = (pairs["low"] > 0).map({True: "yes", False: "no"})
    return ranks.reset_index(), pairs[["dataset", "A", "B", "A - B [95%]", "P(A > B)", "distinguishable"]]


def deploy_table(long: pd.DataFrame, precisions: list) -> pd.DataFrame:
    """Per template x dataset x runtime: the score threshold with the best F1 on the validation split, and test
    precision, recall and F1 (masks, IoU 0.5) with it; means over seeds."""
    means = seed_means(long)
    rows = []
    for runtime, prefix in [("PyTorch", "")] + [(f"IR {p.upper()}", ir_prefix(p)) for p in precisions]:
        part = means[["template", "dataset"] + [prefix + c for c in DEPLOY]].copy()
        part.columns = ["template", "dataset", "threshold", "precision", "recall", "F1"]
        part.insert(2, "runtime", runtime)
        rows.append(part)
    return pd.concat(rows).sort_values(["template", "dataset"], kind="stable")


def _number(value):
    return None if pd.isna(value) else round(float(value), 3)


def ir_table(long: pd.DataFrame, precisions: list) -> pd.DataFrame:
    """PyTorch against each exported IR precision, segm mAP per template x dataset."""
    columns = ["template", "dataset", "segm_map", "ir_segm_map", "ir_minus_pytorch"]
    columns += ["ir_fp16_segm_map"] * ("fp16" in precisions) + ["ir_bf16_segm_map", "bf16_minus_fp32"] * (
        "bf16" in precisions) + ["ir_int8_segm_map", "int8_minus_fp32"] * ("int8" in precisions)
    table = long[columns].copy()
    if "int8" in precisions:
        lost = table["int8_minus_fp32"] < -INT8_TOLERANCE
        table["note"] = lost.map({True: f"INT8 loses more than {INT8_TOLERANCE} points", False: ""})
    return table.rename(columns={"segm_map": "PyTorch", "ir_segm_map": "IR FP32", "ir_minus_pytorch": "FP32 - PyTorch",
                                 "ir_fp16_segm_map": "IR FP16", "ir_bf16_segm_map": "IR BF16",
                                 "bf16_minus_fp32": "BF16 - FP32", "ir_int8_segm_map": "IR INT8",
                                 "int8_minus_fp32": "INT8 - FP32"})


def speed_table(long: pd.DataFrame, precisions: list) -> pd.DataFrame:
    """Per template, medians over its datasets: batch-1 latency, OpenVINO throughput, and the ratios."""
    bf16, int8 = "bf16" in precisions, "int8" in precisions
    latencies = ["latency_ms", "ir_latency_ms"] + ["ir_bf16_latency_ms"] * bf16 + ["ir_int8_latency_ms"] * int8
    throughputs = ["ir_throughput_fps"] + ["ir_bf16_throughput_fps"] * bf16 + ["ir_int8_throughput_fps"] * int8
    table = long.groupby("template")[latencies + throughputs].median()
    table["FP32 speed-up over PyTorch"] = table["latency_ms"] / table["ir_latency_ms"]
    if bf16:
        table["BF16 speed-up over PyTorch"] = table["latency_ms"] / table["ir_bf16_latency_ms"]
    if int8:
        table["INT8 speed-up over FP32"] = table["ir_latency_ms"] / table["ir_int8_latency_ms"]
    names = {"latency_ms": "PyTorch latency (ms)"}
    for key, label in (("ir", "FP32"), ("ir_bf16", "BF16"), ("ir_int8", "INT8")):
        names.update({f"{key}_latency_ms": f"{label} latency (ms)", f"{key}_throughput_fps": f"{label} throughput (img/s)"})
    return table.reset_index().rename(columns=names)


def speed_note(long: pd.DataFrame, precisions: list) -> str:
    """What the speed table's precisions mean, and whether BF16 really ran in bfloat16 on this machine."""
    note = ("On this machine's CPU, on each dataset's first test image resized as the template says (a "
            "keep_ratio template pads it only to a multiple of 32): batch-1 latency is the median of repeated runs "
            "after warm-up; OpenVINO throughput runs asynchronous requests under its throughput hint. Medians over "
            "datasets. FP32 and FP16 IRs compute in f32.")
    if "bf16" in precisions:
        note += (" BF16 is the FP32 IR computed in bfloat16, which is what OpenVINO does by default on CPUs with "
                 "AMX or AVX512-BF16.")
        ran = set(long["ir_bf16_inference_precision"].dropna())
        if "f32" in ran:
            note += " This CPU has no bfloat16 arithmetic, so BF16 ran in f32 here."
    return note


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


def pareto(points: pd.DataFrame) -> pd.Series:
    """True for each row (latency_ms, accuracy) that no other row beats on both: faster and as accurate, or better."""
    def beaten(row):
        others = points.drop(index=row.name)
        return ((others["latency_ms"] <= row["latency_ms"]) & (others["accuracy"] >= row["accuracy"]) &
                ((others["latency_ms"] < row["latency_ms"]) | (others["accuracy"] > row["accuracy"]))).any()
    return ~points.apply(beaten, axis=1) if len(points) else pd.Series(dtype=bool)


def tradeoff_table(long: pd.DataFrame, datasets: list) -> pd.DataFrame:
    """Per template: average segm mAP, OpenVINO FP32 latency (PyTorch where no IR ran), on the Pareto front?"""
    means = seed_means(long)
    table = pd.DataFrame({
        "accuracy": averages(long, datasets).groupby(level="template", sort=False)["average"].mean(),
        "ir_latency": means.groupby("template", sort=False)["ir_latency_ms"].median(),
        "pytorch_latency": means.groupby("template", sort=False)["latency_ms"].median()})
    table["latency_ms"] = table["ir_latency"].fillna(table["pytorch_latency"])
    table["measured on"] = table["ir_latency"].notna().map({True: "OpenVINO FP32", False: "PyTorch"})
    known = table.dropna(subset=["accuracy", "latency_ms"])
    table["Pareto front"] = pareto(known[["latency_ms", "accuracy"]]).reindex(table.index).map(
        {True: "yes", False: "no"})
    table.index.name = "template"
    return table.reset_index()[["template", "accuracy", "latency_ms", "measured on", "Pareto front"]].rename(
        columns={"accuracy": "Average segm mAP", "latency_ms": "Latency (ms)"})


def plot_tradeoff(table: pd.DataFrame, compared: Comparison, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    known = table.dropna(subset=["Average segm mAP", "Latency (ms)"])
    for _, row in known.iterrows():
        on_front = row["Pareto front"] == "yes"
        low, high = compared.interval(row["template"], "average")
        if not pd.isna(low):  # the 95% interval of the average
            ax.errorbar(row["Latency (ms)"], row["Average segm mAP"], capsize=3, color="tab:gray", linewidth=1,
                        yerr=[[max(0.0, row["Average segm mAP"] - low)], [max(0.0, high - row["Average segm mAP"])]])
        ax.scatter(row["Latency (ms)"], row["Average segm mAP"], s=60, marker="o" if on_front else "x",
                   color="tab:red" if on_front else "tab:gray")
        ax.annotate(row["template"], (row["Latency (ms)"], row["Average segm mAP"]), textcoords="offset points",
                    xytext=(5, 5))
    front = known[known["Pareto front"] == "yes"].sort_values("Latency (ms)")
    ax.plot(front["Latency (ms)"], front["Average segm mAP"], color="tab:red", linewidth=1, label="Pareto front")
    ax.set_xlabel("batch-1 latency on this CPU, ms (OpenVINO FP32)")
    ax.set_ylabel("average test segm mAP, %")
    ax.set_title("Accuracy against latency")
    ax.margins(0.15)
    if len(front):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_segm(long: pd.DataFrame, compared: Comparison, path: Path) -> None:
    pivot = seed_means(long).pivot(index="dataset", columns="template", values="segm_map")
    bounds = {t: [compared.interval(t, d) for d in pivot.index] for t in pivot.columns}
    # Bar lengths below and above each value (0 in the odd case of an interval beside its point).
    errors = {t: [[max(0.0, pivot.loc[d, t] - low) for d, (low, _) in zip(pivot.index, bounds[t])],
                  [max(0.0, high - pivot.loc[d, t]) for d, (_, high) in zip(pivot.index, bounds[t])]]
              for t in pivot.columns}
    ax = pivot.plot.bar(figsize=(8, 4), rot=0, yerr=errors, capsize=3)
    ax.set_ylabel("segm mAP@[.5:.95], %")
    ax.set_title("Test segm mAP per dataset (bars: 95% bootstrap interval)")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def write_report(long: pd.DataFrame, classes: pd.DataFrame, metrics_dir: Path, stats_dir: Path, datasets: list,
                 precisions: list, recipes: dict, out_dir: Path, confidence_seed: int = 0) -> None:
    """Writes benchmark.md, benchmark.csv, summary.json, the plots and predictions/ into `out_dir`.

    Everything is written to temporary files first and only then moved into place, so a report stage
    that fails or is killed leaves the previous report whole. `recipes` maps each template to the
    parameters it was trained with (template.json of its train stage). predictions/ holds the pictures
    of the selected cells only (copied from their metrics folders), so no file in `out_dir` is stale.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = out_dir / ".predictions.tmp"
    shutil.rmtree(pictures, ignore_errors=True)
    pictures.mkdir()
    seeds = sorted(long["seed"].unique())
    means = seed_means(long)
    tradeoff = tradeoff_table(long, datasets)
    segm, bbox = (comparison(long, metrics_dir, datasets, confidence_seed, v) for v in ("segm_map", "bbox_map"))
    latency = means.assign(latency=means["ir_latency_ms"].fillna(means["latency_ms"])).pivot(
        index="template", columns="dataset", values="latency")
    ranks, pairs = how_sure_tables(segm)
    spread = "mean ± std over seeds " + ", ".join(map(str, seeds)) if len(seeds) > 1 else f"seed {seeds[0]}"
    sections = [
        "# Instance segmentation benchmark",
        "## Recommendation", "\n".join(recommendation(segm, latency)),
        "Segm and bbox mAP@[.5:.95] in percent on each dataset's test split; the average is the plain mean "
        f"over datasets ({spread}). In brackets, the 95% interval from resampling the test images (and the "
        "seeds, with several): how far the number could move on another test set of the same size. GFLOPs are "
        "counted as the seed's are (2 x multiply-accumulates) for one inference on the template's square input, the "
        "box and mask heads each on 100 boxes, averaged over datasets "
        "(the class count changes the heads slightly). A cell reading `not run` belongs to a stage "
        "that has not run or failed.",
        "## Segm mAP", _markdown(benchmark_table(long, datasets, segm)),
        "![segm mAP per dataset](segm_map.png)",
        "## Bbox mAP", _markdown(benchmark_table(long, datasets, bbox, "bbox_map")),
        "## How sure",
        "Ranks by segm mAP per dataset (1 = best; mean over datasets) and the datasets each template wins:",
        _markdown(ranks, floatfmt=".2f"),
        "Each pair of templates on the same resampled test images (paired bootstrap): the difference in segm "
        "mAP, its 95% interval, and the share of resamples in which A beats B (ties count half). A difference "
        "whose interval reaches 0 is not distinguishable from noise on these test sets.",
        _markdown(pairs, floatfmt=".3f"),
        "## Accuracy against speed",
        "A template is on the Pareto front when no other one is both at least as accurate and at least as fast.",
        _markdown(tradeoff, floatfmt=".2f"),
        "![accuracy against latency](accuracy_latency.png)",
        "## OpenVINO IR against PyTorch",
        "Segm mAP of each exported IR (the precisions `export.precisions` selects), computed with the same "
        "pre/post-processing and metric code as PyTorch's.",
        _markdown(ir_table(means, precisions)),
        "## Speed",
        speed_note(long, precisions),
        _markdown(speed_table(means, precisions), floatfmt=".2f"),
        "## Deploying",
        "The score threshold with the best F1 on each dataset's validation split, and precision, recall and F1 "
        "(percent; masks matched at IoU 0.5) with that threshold on the test split, per runtime.",
        _markdown(deploy_table(long, precisions), floatfmt=".3g"),
        "## Per-class segm AP",
    ]
    for dataset in datasets:
        table = classes[classes["dataset"] == dataset].pivot(index="class", columns="template", values="segm_ap")
        if not table.empty:
            sections += [f"### {dataset}", _markdown(table.reset_index())]
    sections += ["## Predictions",
                 f"Test images, ground truth (left) beside the PyTorch model's detections (right), seed {seeds[0]}."]
    for template in long["template"].unique():
        for dataset in datasets:
            source = metrics_dir / cell(template, dataset, seeds[0]) / PICTURE
            picture = f"predictions/{cell(template, dataset, seeds[0])}.jpg"
            if source.is_file():
                shutil.copyfile(source, pictures / Path(picture).name)
                sections += [f"### {template} on {dataset}", f"![{template} on {dataset}]({picture})"]
    stats = _stats(stats_dir, datasets)
    left_out = left_out_table(stats)
    sections += ["## Datasets",
                 "Images and objects per split after `prepare` (train and val are what training saw; test is "
                 "what every number above is measured on). Crowd regions are ignored the COCO way in evaluation.",
                 _markdown(dataset_table(stats)),
                 "Images left out before the split (named below): " + ", ".join(
                     f"{dataset} {len(data['skipped_images'])}" for dataset, data in stats.items()) + ".",
                 "### Instances per class", _markdown(class_table(stats)),
                 "### Converted and left out",
                 _markdown(left_out) if not left_out.empty else "Nothing: every image and object was used as shipped."]
    sections += ["## Templates", "The parameters each template was trained with (`templates` in params.yaml):"]
    sections += [f"### {name}\n\n```yaml\n{yaml.safe_dump(recipe, sort_keys=False)}```" for name, recipe in recipes.items()]
    sections += ["## When and where", _markdown(provenance(long))]
    files = {"benchmark.md": "\n\n".join(sections) + "\n", "benchmark.csv": long.to_csv(index=False),
             "summary.json": json.dumps(summary(long, datasets, segm), indent=2)}
    staged = []
    for name, text in files.items():
        staged.append((out_dir / f".{name}.tmp", out_dir / name))
        staged[-1][0].write_text(text)
    for name, plot in (("segm_map.png", lambda path: plot_segm(long, segm, path)),
                       ("accuracy_latency.png", lambda path: plot_tradeoff(tradeoff, segm, path))):
        staged.append((out_dir / f".{name}.tmp.png", out_dir / name))
        plot(staged[-1][0])
    for tmp, final in staged:
        os.replace(tmp, final)
    shutil.rmtree(out_dir / "predictions", ignore_errors=True)
    os.replace(pictures, out_dir / "predictions")


def provenance(long: pd.DataFrame) -> pd.DataFrame:
    """When the test evaluations finished, and on which CPU, per template (all its datasets and seeds)."""
    groups = long.groupby(["template", "cpu", "cpu_cores"], dropna=False, sort=False)
    table = groups["finished"].agg(["min", "max", "count"]).reset_index()
    return table.rename(columns={"min": "first evaluation (UTC)", "max": "last evaluation (UTC)",
                                 "count": "cells", "cpu_cores": "cores"})
