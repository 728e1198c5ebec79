"""The report's charts twice: PNGs for the markdown report, and the data behind them as files that dvc.yaml's
top-level `plots:` declares, so that `dvc plots show` draws them and `dvc plots diff` overlays experiments."""

from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

# The plot data files, in the report folder; dvc.yaml names the same paths (tests/test_dvc_yaml.py checks it).
DATA_FOLDER = "plots"
ACCURACY_LATENCY = "accuracy_latency.json"
SEGM_PER_DATASET = "segm_map.json"
EPOCHS = "epochs.json"
PNGS = ("segm_map.png", "accuracy_latency.png", "epochs.png")


def _rounded(table: pd.DataFrame) -> list:
    """Records with numbers rounded to 1e-3 and missing values as null."""
    return table.round(3).astype(object).where(table.notna(), None).to_dict(orient="records")


def plot_data(tradeoff: pd.DataFrame, scores: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    """file name -> JSON text: one record per point, fields named for dvc.yaml's x and y."""
    points = tradeoff.assign(pareto=tradeoff["pareto"].map({True: "yes", False: "no"}))
    per_dataset = scores[scores["column"] != "average"].rename(columns={"column": "dataset", "point": "segm_map"})
    curves = epochs.dropna(subset=["average"]).rename(columns={"average": "val_segm_map"})
    curves = curves.assign(best=curves["best"].map({True: "yes", False: "no"}))[
        ["template", "epoch", "val_segm_map", "best"]]
    return {ACCURACY_LATENCY: _rounded(points.rename(columns={"accuracy": "segm_map"})[
                ["template", "latency_ms", "segm_map", "low", "high", "pareto"]]),
            SEGM_PER_DATASET: _rounded(per_dataset[["template", "dataset", "segm_map", "low", "high"]]),
            EPOCHS: _rounded(curves)}


def _errors(points: pd.Series, low: pd.Series, high: pd.Series) -> list:
    """Bar lengths below and above each value (0 in the odd case of an interval beside its point)."""
    return [(points - low).clip(lower=0).fillna(0).tolist(), (high - points).clip(lower=0).fillna(0).tolist()]


def segm_bars(scores: pd.DataFrame, path: Path) -> None:
    per_dataset = scores[scores["column"] != "average"]
    pivot = per_dataset.pivot(index="column", columns="template", values="point")
    order = list(dict.fromkeys(per_dataset["column"]))
    pivot = pivot.reindex(order)
    errors = {t: _errors(pivot[t], *(per_dataset[per_dataset["template"] == t].set_index("column")[c].reindex(order)
                                     for c in ("low", "high"))) for t in pivot.columns}
    ax = pivot.plot.bar(figsize=(8, 4), rot=0, yerr=errors, capsize=3)
    ax.set_xlabel("")
    ax.set_ylabel("segm mAP@[.5:.95], %")
    ax.set_title("Test segm mAP per dataset (bars: 95% interval, test images and seeds)")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def tradeoff_scatter(tradeoff: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    known = tradeoff.dropna(subset=["accuracy", "latency_ms"]).sort_values("latency_ms")
    for i, row in enumerate(known.itertuples()):
        on_front = bool(row.pareto)
        if not pd.isna(row.low):
            ax.errorbar(row.latency_ms, row.accuracy, capsize=3, color="tab:gray", linewidth=1,
                        yerr=[[max(0.0, row.accuracy - row.low)], [max(0.0, row.high - row.accuracy)]])
        ax.scatter(row.latency_ms, row.accuracy, s=60, marker="o" if on_front else "x",
                   color="tab:red" if on_front else "tab:gray")
        # Labels of neighbours in latency alternate above and below their point, so that close ones do not overlap.
        ax.annotate(row.template, (row.latency_ms, row.accuracy), textcoords="offset points",
                    xytext=(5, 5 if i % 2 == 0 else -13))
    front = known[known["pareto"]].sort_values("latency_ms")
    ax.plot(front["latency_ms"], front["accuracy"], color="tab:red", linewidth=1, label="Pareto front")
    ax.set_xlabel("batch-1 latency on this CPU, ms (OpenVINO FP32)")
    ax.set_ylabel("average test segm mAP, %")
    ax.set_title("Accuracy against latency")
    ax.margins(0.15)
    if len(front):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def epoch_curves(epochs: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for template, rows in epochs.dropna(subset=["average"]).groupby("template", sort=False):
        line, = ax.plot(rows["epoch"], rows["average"], marker=".", label=template)
        best = rows[rows["best"]]
        ax.scatter(best["epoch"], best["average"], s=120, facecolors="none", edgecolors=line.get_color())
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation segm mAP, average over datasets, %")
    ax.set_title("Validation per epoch (circled: best average)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
