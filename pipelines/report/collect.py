"""Reading the cells' files into frames: the tidy long table, the replicates behind the intervals, per-class AP,
per-epoch validation, the datasets' statistics, the recipes as trained and what the race stopped. Nothing here
formats or judges."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipelines import cells as cell_files
from pipelines.cells import Cell
from pipelines.comparison import Measured
from pipelines.legs import STOPPED
from pipelines.racing import curve
from pipelines.speed import SideBySide

KEYS = ["template", "dataset", "seed", "runtime"]


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def long_table(metrics_dir: Path, selected: list, runtimes: list) -> pd.DataFrame:
    """One row per cell x runtime (pytorch, ir_<precision>): every field of the runtime's metrics file and of the
    cell's training.json, and the differences `minus_pytorch` (segm mAP against the cell's PyTorch model) and
    `minus_fp32` (an IR against the FP32 IR). A file not written yet leaves its fields empty: only the selected
    cells and runtimes are read, so nothing left from an earlier run with other settings reaches the report."""
    rows = []
    for cell in selected:
        trained = _read(cell.metrics_dir(metrics_dir) / cell_files.TRAINING_FILE)
        for runtime in runtimes:
            rows.append({"template": cell.template, "dataset": cell.dataset, "seed": cell.seed, "runtime": runtime,
                         **_read(cell.results(runtime, metrics_dir)), **trained})
    long = pd.DataFrame(rows)
    if "segm_map" not in long:
        long["segm_map"] = np.nan
    for column, reference in (("minus_pytorch", cell_files.PYTORCH), ("minus_fp32", cell_files.runtime("fp32"))):
        base = long[long["runtime"] == reference][KEYS[:3] + ["segm_map"]].rename(columns={"segm_map": "reference"})
        merged = long.merge(base, on=KEYS[:3], how="left")
        long[column] = (merged["segm_map"] - merged["reference"]).where(long["runtime"] != reference).round(3)
    return long


def measured(metrics_dir: Path, templates: list, datasets: list, seeds: list, runtime: str, value: str,
             read: Callable[[Path], dict] = _read) -> dict:
    """`{(template, dataset): comparison.Measured}` of `value` (segm_map, bbox_map) for one runtime: each seed's point
    and bootstrap replicates. A template x dataset with any seed's files missing, or its value None (AP large where
    the test split holds nothing large), is left out. `read`: a JSON file's
    contents, {} where it is missing (pipelines.experiments reads another revision's through DVC)."""
    found = {}
    for template in templates:
        for dataset in datasets:
            runs = [Cell(template, dataset, s) for s in seeds]
            results = [read(c.results(runtime, metrics_dir)) for c in runs]
            replicates = [read(c.replicates(runtime, metrics_dir)) for c in runs]
            if all(r.get(value) is not None for r in results) and all(value in r for r in replicates):
                found[(template, dataset)] = Measured(np.array([r[value] for r in results], float),
                                                      np.array([r[value] for r in replicates], float))
    return found


def errors(metrics_dir: Path, selected: list, runtimes: list) -> pd.DataFrame:
    """template, dataset, seed, runtime, iou_type, error, dap, low, high: every cell's error decomposition
    (pipelines.tide), one row per error type; missing files leave no rows."""
    rows = []
    for cell in selected:
        for runtime in runtimes:
            found = _read(cell.errors(runtime, metrics_dir))
            rows += [{"template": cell.template, "dataset": cell.dataset, "seed": cell.seed, "runtime": runtime,
                      "iou_type": iou_type, "error": name, **values}
                     for iou_type in ("segm", "bbox") if iou_type in found
                     for name, values in found[iou_type]["dap"].items()]
    return pd.DataFrame(rows, columns=KEYS + ["iou_type", "error", "dap", "low", "high"])


def measured_errors(metrics_dir: Path, templates: list, datasets: list, seeds: list, error: str,
                    runtime: str = cell_files.PYTORCH, iou_type: str = "segm") -> dict:
    """`{(template, dataset): comparison.Measured}` of one error type's dAP: each seed's and its replicates (the same
    resamples as the mAP's). A template x dataset with any seed's file missing is left out."""
    found = {}
    for template in templates:
        for dataset in datasets:
            decomposed = [_read(Cell(template, dataset, s).errors(runtime, metrics_dir)).get(iou_type) for s in seeds]
            if all(decomposed):
                found[(template, dataset)] = Measured(np.array([d["dap"][error]["dap"] for d in decomposed], float),
                                                      np.array([d["replicates"][error] for d in decomposed], float))
    return found


def deploy_errors(metrics_dir: Path, selected: list, runtime: str = cell_files.PYTORCH) -> dict:
    """(template, dataset) -> the confusion matrix at the deploy threshold summed over seeds, and the counts of
    each error per size range summed over seeds (masks)."""
    found = {}
    for cell in selected:
        data = _read(cell.errors(runtime, metrics_dir))
        if not data:
            continue
        key = (cell.template, cell.dataset)
        matrix = np.array(data["deploy"]["confusion"])
        counts = pd.DataFrame(data["segm"]["counts"])
        if key in found:
            matrix, counts = matrix + found[key]["confusion"], counts + found[key]["counts"]
        found[key] = {"confusion": matrix, "counts": counts}
    return found


def per_class(metrics_dir: Path, selected: list) -> pd.DataFrame:
    """template, dataset, class, segm_ap, segm_ap50, bbox_ap, bbox_ap50: the PyTorch model's, mean over seeds."""
    rows = [{"template": c.template, "dataset": c.dataset, "class": name, **values}
            for c in selected for name, values in _read(c.metrics_dir(metrics_dir) / cell_files.PER_CLASS_FILE).items()]
    columns = ["template", "dataset", "class", "segm_ap", "segm_ap50", "bbox_ap", "bbox_ap50"]
    return pd.DataFrame(rows, columns=columns).groupby(columns[:3], sort=False).mean().reset_index()


def epochs(metrics_dir: Path, selected: list) -> pd.DataFrame:
    """template, dataset, seed, epoch, val_segm_map: each training's validation curve (DVCLive's record)."""
    frames = []
    for cell in selected:
        path = cell.metrics_dir(metrics_dir) / cell_files.VAL_SEGM_CURVE
        if path.is_file():
            curve = pd.read_csv(path, sep="\t").rename(columns={"step": "epoch", "segm_map": "val_segm_map"})
            frames.append(curve[["epoch", "val_segm_map"]].assign(template=cell.template, dataset=cell.dataset,
                                                                  seed=cell.seed))
    columns = ["template", "dataset", "seed", "epoch", "val_segm_map"]
    return pd.concat(frames)[columns] if frames else pd.DataFrame(columns=columns)


def recipes(metrics_dir: Path, selected: list) -> dict:
    """template -> the recipe its first trained cell recorded (DVCLive's params.yaml)."""
    found = {}
    for cell in selected:
        path = cell.metrics_dir(metrics_dir) / cell_files.RECIPE_FILE
        recorded = yaml.safe_load(path.read_text()) if path.is_file() else {}
        if cell.template not in found and recorded:
            found[cell.template] = recorded
    return found


def stats(stats_dir: Path, datasets: list) -> dict:
    """dataset -> the statistics `prepare` wrote, for the datasets prepared so far."""
    return {d: _read(Path(stats_dir) / f"{d}.json") for d in datasets if (Path(stats_dir) / f"{d}.json").is_file()}


def side_by_side(metrics_dir: Path) -> SideBySide | None:
    """The speed stage's side-by-side timing, None where it has not run."""
    found = _read(Path(metrics_dir) / cell_files.SPEED_FILE)
    return SideBySide(found) if found else None


def stopped(metrics_dir: Path, selected: list) -> dict:
    """template -> the race's stopped record (pipelines.legs), for the templates the race stopped (a template is
    stopped on every dataset and seed alike)."""
    found = {}
    for cell in selected:
        record = _read(cell.metrics_dir(metrics_dir) / cell_files.TRAINING_FILE)
        if STOPPED in record:
            found.setdefault(cell.template, record)
    return found


def race_curves(metrics_dir: Path, selected: list) -> dict:
    """(template, dataset, seed) -> [racing.Epoch]: every cell's validation record, for the cells that have one."""
    found = {}
    for cell in selected:
        record = _read(cell.metrics_dir(metrics_dir) / cell_files.VALIDATION_FILE)
        if record:
            found[(cell.template, cell.dataset, cell.seed)] = curve(record)
    return found
