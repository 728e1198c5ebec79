"""The report's tables, from the long table and the comparisons: DataFrames in, DataFrames out, numbers kept as
numbers (pipelines.report.text formats them once, at the end)."""

import numpy as np
import pandas as pd

from pipelines import racing
from pipelines.cells import PYTORCH, precision_of
from pipelines.comparison import Comparison
from pipelines.confidence import interval, win_share
from pipelines.speed import SideBySide

INT8_TOLERANCE = 1.5  # segm mAP points INT8 may lose against FP32 before the report flags it


def runtime_rows(long: pd.DataFrame, runtime: str = PYTORCH) -> pd.DataFrame:
    return long[long["runtime"] == runtime]


def seed_means(long: pd.DataFrame) -> pd.DataFrame:
    """One row per template x dataset x runtime: each number averaged over seeds (empty if a seed is missing)."""
    numbers = long.select_dtypes("number").drop(columns=["seed"])
    grouped = pd.concat([long[["template", "dataset", "runtime"]], numbers], axis=1)
    return grouped.groupby(["template", "dataset", "runtime"], sort=False).agg(
        lambda v: v.mean(skipna=False)).reset_index()


def per_seed_averages(long: pd.DataFrame, datasets: list, value: str = "segm_map") -> pd.DataFrame:
    """template x seed: `value` per dataset (columns) and their average (empty if a dataset is missing)."""
    wide = runtime_rows(long).pivot_table(index=["template", "seed"], columns="dataset", values=value,
                                          dropna=False, sort=False).reindex(columns=datasets)
    wide["average"] = wide.mean(axis=1, skipna=False)
    return wide


def scores(long: pd.DataFrame, compared: Comparison, value: str = "segm_map") -> pd.DataFrame:
    """template, column (average or a dataset), point (mean over seeds), seed_std (their spread; NaN with one
    seed), low, high (the 95% interval of both noises)."""
    wide = per_seed_averages(long, compared.datasets, value)
    rows = []
    for template in compared.templates:
        for column in ["average"] + compared.datasets:
            values = wide.loc[template, column] if template in wide.index.get_level_values(0) else pd.Series([np.nan])
            low, high = compared.interval(template, column)
            rows.append({"template": template, "column": column,
                         "point": values.mean(skipna=False), "seed_std": values.std() if len(values) > 1 else np.nan,
                         "low": low, "high": high})
    return pd.DataFrame(rows)


def by_size(long: pd.DataFrame, segm: Comparison, compared_by_size: dict) -> pd.DataFrame:
    """template, dataset, size (all, small, medium, large), point, seed_std, low, high: segm mAP and AP by COCO's
    object sizes (`compared_by_size`: size -> Comparison of segm_map_<size>) per dataset."""
    frames = [scores(long, segm).assign(size="all")]
    frames += [scores(long, compared, f"segm_map_{size}").assign(size=size)
               for size, compared in compared_by_size.items() if f"segm_map_{size}" in long]
    table = pd.concat(frames, ignore_index=True).rename(columns={"column": "dataset"})
    return table[table["dataset"] != "average"].reset_index(drop=True)


def small_differences(small: Comparison) -> pd.DataFrame:
    """Per dataset, the template with the best AP small against each other one: dataset, A, B, difference, low,
    high, p_better (paired, both noises)."""
    rows = []
    for dataset in small.datasets:
        best, _ = small.group_of_best(dataset)
        for other in (t for t in small.templates if best and t != best and not pd.isna(small.point(t, dataset))):
            rows.append({"dataset": dataset, "A": best, "B": other, **small.difference(best, other, dataset)})
    return pd.DataFrame(rows, columns=["dataset", "A", "B", "difference", "low", "high", "p_better"])


def complexity(long: pd.DataFrame) -> pd.DataFrame:
    """template, gflops, params_m: the PyTorch model's, averaged over datasets (class counts change the heads)."""
    return runtime_rows(long).groupby("template", sort=False)[["gflops", "params_m"]].mean().reset_index()


def latency(long: pd.DataFrame) -> pd.DataFrame:
    """template x dataset: batch-1 latency of the FP32 IR (PyTorch's where no IR ran), mean over seeds."""
    rows = long[long["runtime"].isin([PYTORCH, "ir_fp32"])]
    table = rows.pivot_table(index=["template", "dataset"], columns="runtime", values="latency_ms", sort=False)
    chosen = table["ir_fp32"].fillna(table[PYTORCH]) if "ir_fp32" in table else table[PYTORCH]
    return chosen.unstack("dataset")


def pareto(points: pd.DataFrame) -> pd.Series:
    """True for each row (latency_ms, accuracy) that no other row beats on both: faster and as accurate, or better."""
    def beaten(row):
        others = points.drop(index=row.name)
        return ((others["latency_ms"] <= row["latency_ms"]) & (others["accuracy"] >= row["accuracy"]) &
                ((others["latency_ms"] < row["latency_ms"]) | (others["accuracy"] > row["accuracy"]))).any()
    return ~points.apply(beaten, axis=1) if len(points) else pd.Series(dtype=bool)


def tradeoff(long: pd.DataFrame, compared: Comparison, speeds: SideBySide | None = None) -> pd.DataFrame:
    """template, accuracy (average segm mAP of `compared`), low, high, latency_ms, measured_on, pareto. The
    latency is the side-by-side one of the deployment target (`speeds`, the geometric mean over datasets) where
    the speed stage ran, else the FP32 IR's median over the cells' own timings (PyTorch's where no IR ran)."""
    def median(runtime):
        return runtime_rows(long, runtime).groupby("template", sort=False)["latency_ms"].median()
    ir, torch = median("ir_fp32"), median(PYTORCH)
    table = pd.DataFrame({"accuracy": [compared.point(t, "average") for t in compared.templates]},
                         index=compared.templates)
    table[["low", "high"]] = [compared.interval(t, "average") for t in compared.templates]
    table["latency_ms"] = ir.reindex(table.index).fillna(torch.reindex(table.index))
    table["measured_on"] = np.where(ir.reindex(table.index).notna(), "OpenVINO FP32, each cell alone", "PyTorch")
    if speeds is not None:
        together = pd.Series({t: speeds.latency(t, "average")[0] for t in compared.templates}).dropna()
        table.loc[together.index, "latency_ms"] = together
        table.loc[together.index, "measured_on"] = f"{precision_label(speeds.runtime)}, side by side"
    known = table.dropna(subset=["accuracy", "latency_ms"])
    front = pareto(known[["latency_ms", "accuracy"]])
    table["pareto"] = [bool(front.get(t, False)) for t in table.index]
    return table.rename_axis("template").reset_index()


def side_by_side(speeds: SideBySide, templates: list, reference: str | None) -> pd.DataFrame:
    """template, column (each dataset, then the average), latency (ms per image with pre- and post-processing,
    median over rounds), low, high, and its time over `reference`'s (ratio, ratio_low, ratio_high)."""
    rows = []
    for column in list(speeds.datasets) + ["average"]:
        for template in templates:
            latency = speeds.latency(template, column)
            found = speeds.ratio(reference, template, column) if reference else None
            rows.append({"template": template, "column": column, "latency": latency[0], "low": latency[1],
                         "high": latency[2], "ratio": found.point if found else np.nan,
                         "ratio_low": found.low if found else np.nan, "ratio_high": found.high if found else np.nan})
    return pd.DataFrame(rows)


def ir_against_pytorch(long: pd.DataFrame, measured: dict) -> pd.DataFrame:
    """template, dataset, runtime (each IR), segm_map, minus_pytorch and its paired 95% interval (replicate b of
    the IR minus replicate b of the same trained models in PyTorch, averaged over seeds: the training noise does
    not enter, the models are the same), P(IR > PyTorch), and minus_fp32. `measured`: runtime ->
    `collect.measured` of segm_map."""
    means = seed_means(long)
    rows = means[means["runtime"] != PYTORCH][["template", "dataset", "runtime", "segm_map", "minus_pytorch",
                                                "minus_fp32"]].copy()
    bounds = []
    for row in rows.itertuples():
        ir, torch = measured.get(row.runtime, {}).get((row.template, row.dataset)), \
            measured[PYTORCH].get((row.template, row.dataset))
        if ir is None or torch is None:
            bounds.append((np.nan, np.nan, np.nan))
            continue
        differences = (ir.replicates - torch.replicates).mean(axis=0)
        bounds.append((*interval(differences), win_share(differences)))
    rows[["low", "high", "p_better"]] = bounds
    rows["int8_loses"] = (rows["runtime"] == "ir_int8") & (rows["minus_fp32"] < -INT8_TOLERANCE)
    return rows


def speed(long: pd.DataFrame) -> pd.DataFrame:
    """template, runtime, latency_ms, throughput_fps (medians over datasets and seeds), speedup (PyTorch's
    latency over this one), inference_precision (what the IR computed in)."""
    rows = long.groupby(["template", "runtime"], sort=False)[["latency_ms"] + (
        ["throughput_fps"] if "throughput_fps" in long else [])].median().reset_index()
    torch = rows[rows["runtime"] == PYTORCH].set_index("template")["latency_ms"]
    rows["speedup"] = rows["template"].map(torch) / rows["latency_ms"]
    if "inference_precision" in long:
        ran = long.dropna(subset=["inference_precision"]).groupby(["template", "runtime"])["inference_precision"]
        rows["inference_precision"] = [", ".join(sorted(set(ran.get_group(k)))) if k in ran.groups else None
                                       for k in zip(rows["template"], rows["runtime"])]
    return rows


def bf16_ran_in_f32(long: pd.DataFrame) -> bool:
    """True when a BF16 IR ran in f32 (the CPU has no bfloat16 arithmetic)."""
    if "inference_precision" not in long:
        return False
    return "f32" in set(long[long["runtime"] == "ir_bf16"]["inference_precision"].dropna())


DEPLOY = ["deploy_threshold", "deploy_precision", "deploy_recall", "deploy_f1"]


def deploy(long: pd.DataFrame) -> pd.DataFrame:
    """template, dataset, runtime, threshold, precision, recall, f1: the F1-best score threshold on the validation
    split and what it gives on the test split (masks at IoU 0.5), means over seeds."""
    means = seed_means(long)
    present = [c for c in DEPLOY if c in means]
    table = means[["template", "dataset", "runtime"] + present].rename(columns=lambda c: c.removeprefix("deploy_"))
    return table.sort_values(["template", "dataset"], kind="stable")


def epoch_averages(curves: pd.DataFrame, datasets: list) -> pd.DataFrame:
    """template, epoch, one column per dataset (validation segm mAP, mean over seeds), average (over datasets, at
    epochs every dataset reached) and best (the epoch with the best average of its template)."""
    means = curves.groupby(["template", "epoch", "dataset"], sort=False)["val_segm_map"].mean()
    table = means.unstack("dataset").reindex(columns=datasets)
    table["average"] = table.mean(axis=1, skipna=False)
    table = table.reset_index()
    table["best"] = False
    for _, rows in table.dropna(subset=["average"]).groupby("template", sort=False):
        table.loc[rows["average"].idxmax(), "best"] = True
    return table


def why(segm: Comparison, daps: dict) -> pd.DataFrame:
    """Per dataset, the best template against each other one: their segm mAP gap, and for each error type the other
    one's dAP minus the best's (positive: fixing that error would gain the other one more) with its paired
    interval of both noises. `daps`: error type -> Comparison of its dAP (masks, PyTorch)."""
    rows = []
    for dataset in segm.datasets:
        best, _ = segm.group_of_best(dataset)
        for other in [t for t in segm.templates if t != best and best is not None]:
            gap = segm.difference(best, other, dataset)
            for error, compared in daps.items():
                found = compared.difference(other, best, dataset)
                rows.append({"dataset": dataset, "best": best, "other": other, "gap": gap["difference"],
                             "gap_low": gap["low"], "error": error, **found})
    return pd.DataFrame(rows, columns=["dataset", "best", "other", "gap", "gap_low", "error", "difference", "low",
                                       "high", "p_better"])


def separating(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x other template, the error type that separates it from the best: the largest dAP difference
    among the distinguishable ones (interval above 0), else the largest one (`distinguishable` False)."""
    rows = []
    for _, group in pairs.groupby(["dataset", "other"], sort=False):
        clear = group[group["low"] > 0]
        chosen = (clear if len(clear) else group).sort_values("difference", ascending=False).iloc[0]
        rows.append({**chosen.to_dict(), "distinguishable": bool(len(clear))})
    return pd.DataFrame(rows, columns=list(pairs.columns) + ["distinguishable"])


def dap_table(daps: dict) -> pd.DataFrame:
    """template, dataset, error, dap (mean over seeds), low, high (both noises): the PyTorch models' masks."""
    rows = []
    for error, compared in daps.items():
        for template in compared.templates:
            for dataset in compared.datasets:
                low, high = compared.interval(template, dataset)
                rows.append({"template": template, "dataset": dataset, "error": error,
                             "dap": compared.point(template, dataset), "low": low, "high": high})
    return pd.DataFrame(rows, columns=["template", "dataset", "error", "dap", "low", "high"])


def runtime_errors(errors: pd.DataFrame) -> pd.DataFrame:
    """template, dataset, runtime and one column per error type: masks' dAP of PyTorch and each IR, means over
    seeds (does an IR lose by localisation, or by misses?)."""
    main = errors[(errors["iou_type"] == "segm") & ~errors["error"].isin(["false_positives", "false_negatives"])]
    table = main.pivot_table(index=["template", "dataset", "runtime"], columns="error", values="dap", sort=False)
    return table.reindex(columns=[e for e in dict.fromkeys(main["error"])]).reset_index()


def per_class_segm(classes: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """class x template: segm AP on one dataset."""
    return classes[classes["dataset"] == dataset].pivot(index="class", columns="template",
                                                        values="segm_ap").reset_index()


def provenance(long: pd.DataFrame) -> pd.DataFrame:
    """When the test evaluations finished, and on which CPU, per template (all its datasets and seeds)."""
    rows = runtime_rows(long)
    if "finished" not in rows:
        return pd.DataFrame(columns=["template", "cpu", "cores", "first", "last", "cells"])
    groups = rows.groupby(["template", "cpu", "cpu_cores"], dropna=False, sort=False)
    table = groups["finished"].agg(["min", "max", "count"]).reset_index()
    table["cpu_cores"] = table["cpu_cores"].astype("Int64")  # whole numbers, though IR rows left the column float
    return table.rename(columns={"min": "first", "max": "last", "count": "cells", "cpu_cores": "cores"})


def datasets(stats: dict) -> pd.DataFrame:
    """One row per dataset x split: images, objects, crowd regions and what was converted or left out."""
    rows = [{"dataset": dataset, "split": split, "images": s["images"], "instances": sum(s["instances"].values()),
             "crowd regions": sum(s["crowd_regions"].values()), "images without objects": s["images_without_objects"],
             "converted": len(s["converted"]), "skipped objects": len(s["skipped_objects"])}
            for dataset, data in stats.items() for split, s in data["splits"].items()]
    return pd.DataFrame(rows)


def classes(stats: dict) -> pd.DataFrame:
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


SMALL_AREA = 32 * 32  # COCO's "small": objects under 32 x 32 pixels of area


def _sizes(data: dict, split: str) -> np.ndarray:
    """`[objects, 3]`: area, image width, image height of each object of a split (prepare's object_sizes)."""
    found = data["splits"].get(split, {}).get("object_sizes", [])
    return np.asarray(found, float).reshape(-1, 3)


def object_sizes(stats: dict) -> pd.DataFrame:
    """dataset, split, objects, the 10th/50th/90th percentiles of their side (the square root of their area, in the
    image's pixels), the median side relative to the image's, and the share under COCO's small."""
    rows = []
    for dataset, data in stats.items():
        for split in data["splits"]:
            sizes = _sizes(data, split)
            if not len(sizes):
                continue
            side = np.sqrt(sizes[:, 0])
            p10, p50, p90 = np.percentile(side, [10, 50, 90])
            rows.append({"dataset": dataset, "split": split, "objects": len(sizes), "side_p10": p10, "side_median": p50,
                         "side_p90": p90, "relative_median": 100 * np.median(side / np.sqrt(sizes[:, 1] * sizes[:, 2])),
                         "small": 100 * np.mean(sizes[:, 0] < SMALL_AREA)})
    return pd.DataFrame(rows, columns=["dataset", "split", "objects", "side_p10", "side_median", "side_p90",
                                       "relative_median", "small"])


def area_at_input(sizes: np.ndarray, input_size: int, resize_mode: str) -> np.ndarray:
    """Each object's area once its image is resized as a template's input (pipelines/inference.py's modes:
    stretch scales width and height apart, the others by the longer side)."""
    width, height = sizes[:, 1], sizes[:, 2]
    if resize_mode == "stretch":
        return sizes[:, 0] * (input_size / width) * (input_size / height)
    return sizes[:, 0] * (input_size / np.maximum(width, height)) ** 2


def tile_sizes(recipes: dict) -> dict:
    """template -> its tile size, for the templates trained on tiles (`recipes`: template -> recipe as trained)."""
    return {t: r["tiling"]["size"] for t, r in recipes.items() if isinstance(r.get("tiling"), dict)}


def small_at_input(stats: dict, recipes: dict, split: str = "test") -> pd.DataFrame:
    """template, input, dataset, small (% of the split's objects under COCO's small at the template's input),
    small_original (% in the images as they are). `recipes`: template -> its recipe as trained.
    A tiled template sees an object at its size in a tile resized to the input (an image smaller than a tile is
    seen whole)."""
    rows = []
    for template, recipe in recipes.items():
        size, mode, tiles = recipe.get("input_size"), recipe.get("resize_mode", "letterbox"), recipe.get("tiling")
        for dataset, data in stats.items():
            sizes = _sizes(data, split)
            if size is None or not len(sizes):
                continue
            shown = area_at_input(sizes, size, mode)
            if isinstance(tiles, dict):
                tiled = sizes[:, 0] * (size / tiles["size"]) ** 2
                shown = np.where(np.maximum(sizes[:, 1], sizes[:, 2]) > tiles["size"], tiled, shown)
            rows.append({"template": template, "dataset": dataset,
                         "input": f"{size} px {mode}" + (f" on {tiles['size']} px tiles" if isinstance(tiles, dict)
                                                         else ""),
                         "small": 100 * np.mean(shown < SMALL_AREA),
                         "small_original": 100 * np.mean(sizes[:, 0] < SMALL_AREA)})
    return pd.DataFrame(rows, columns=["template", "input", "dataset", "small", "small_original"])


def left_out(stats: dict, limit: int = 20) -> pd.DataFrame:
    """Every image or object converted or left out, with the reason; at most `limit` rows per dataset."""
    rows = []
    for dataset, data in stats.items():
        entries = [(f"(subset {e['subset']})", "skipped image", e) for e in data["skipped_images"]]
        for split, s in data["splits"].items():
            entries += [(split, what, e) for key, what in (("skipped_objects", "skipped object"),
                                                           ("converted", "converted image")) for e in s[key]]
        rows += [{"dataset": dataset, "split": split, "what": what, "image": entry["image"], "reason": entry["reason"]}
                 for split, what, entry in entries[:limit]]
        if len(entries) > limit:
            rows.append({"dataset": dataset, "split": "", "what": f"{len(entries) - limit} more", "image": "",
                         "reason": f"listed in data/stats/{dataset}.json"})
    return pd.DataFrame(rows, columns=["dataset", "split", "what", "image", "reason"])


def precision_label(runtime: str) -> str:
    """PyTorch, or IR FP32 / IR INT8 ..."""
    precision = precision_of(runtime)
    return "PyTorch" if precision is None else f"IR {precision.upper()}"


def race_standings(outcome, keep: tuple, margin: float) -> pd.DataFrame:
    """rung, template, epoch, average, low, high, behind, behind_low, behind_high, p_leader, verdict: each template
    at each rung of a race (pipelines.racing.Race), the leader's row with no difference."""
    rows = []
    for fraction, standings in outcome.rungs:
        for row in standings:
            behind = row.behind or {}
            beyond = behind.get("low", 0) > margin
            verdict = ("leader" if row.behind is None else
                       f"stopped: halving (place {row.place + 1} of {len(standings)})" if row.why == racing.HALVING else
                       "stopped: behind" if row.stopped else "goes on" if not beyond else
                       "kept (race.keep)" if row.template in keep else "finishes (its whole schedule is in the rung)")
            rows.append({"rung": fraction, "template": row.template, "epoch": row.epoch, "average": row.average,
                         "low": row.low, "high": row.high, "behind": behind.get("difference", np.nan),
                         "behind_low": behind.get("low", np.nan), "behind_high": behind.get("high", np.nan),
                         "p_leader": behind.get("p_better", np.nan), "verdict": verdict})
    return pd.DataFrame(rows, columns=["rung", "template", "epoch", "average", "low", "high", "behind", "behind_low",
                                       "behind_high", "p_leader", "verdict"])


def race_spent(long: pd.DataFrame, stopped: dict) -> dict:
    """Training the race spent against the full grid's, over the selected cells: epochs (a stopped cell would have
    run its whole schedule) and seconds (a stopped cell's at its own pace per epoch: an estimate)."""
    cells = runtime_rows(long).drop_duplicates(["template", "dataset", "seed"])
    if cells.empty or "epochs_run" not in cells or cells["epochs_run"].isna().any():
        return {}
    full = cells.apply(lambda r: stopped[r.template]["of_epochs"] if r.template in stopped else r.epochs_run, axis=1)
    seconds = cells["train_seconds"].astype(float)
    full_seconds = seconds * full / cells["epochs_run"]
    return {"epochs": int(cells["epochs_run"].sum()), "full_epochs": int(full.sum()),
            "seconds": float(seconds.sum()), "full_seconds": float(full_seconds.sum()),
            "stopped_cells": int(cells["template"].isin(list(stopped)).sum()), "cells": len(cells)}
