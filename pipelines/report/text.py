"""Numbers to text, once, at the end: intervals, markdown tables, the wide tables people read."""

import numpy as np
import pandas as pd

from pipelines.legs import describe

NOT_RUN = "not run"  # a cell whose stage has not run or failed: never a stale number


def number(value, digits: int = 1) -> str | None:
    return None if pd.isna(value) else f"{value:.{digits}f}"


def with_interval(point, low=np.nan, high=np.nan, std=np.nan, signed: bool = False) -> str | None:
    """'62.0', '62.0 ± 2.8' (std over seeds) and ' [58.1, 66.0]' (95% interval) as far as they are known."""
    if pd.isna(point):
        return None
    text = f"{point:+.1f}" if signed else f"{point:.1f}"
    if not pd.isna(std):
        text += f" ± {std:.1f}"
    return text if pd.isna(low) else f"{text} [{low:.1f}, {high:.1f}]"


def markdown(table: pd.DataFrame, floatfmt=".1f") -> str:
    # tabulate's missingval covers None only, so NaN (a missing metrics file) becomes None first.
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=floatfmt,
                                                                        missingval=NOT_RUN)


def yes_no(flags: pd.Series) -> pd.Series:
    return flags.map({True: "yes", False: "no"})


def score_table(scores: pd.DataFrame, complexity: pd.DataFrame, datasets: list, label: str) -> pd.DataFrame:
    """The seed's table: model | GFLOPs | Params (M) | Average <label> mAP | one column per dataset."""
    scores = scores.assign(text=[with_interval(r.point, r.low, r.high, r.seed_std) for r in scores.itertuples()])
    wide = scores.pivot(index="template", columns="column", values="text").reindex(
        index=list(dict.fromkeys(scores["template"])), columns=["average"] + datasets)
    table = complexity.set_index("template").reindex(wide.index).join(wide).reset_index()
    return table.rename(columns={"template": "model", "gflops": "GFLOPs", "params_m": "Params (M)",
                                 "average": f"Average {label} mAP"})


def pairs_table(pairs: pd.DataFrame, training_measured: bool) -> pd.DataFrame:
    table = pd.DataFrame({"dataset": pairs["dataset"], "A": pairs["A"], "B": pairs["B"],
                          "A - B [95%]": [with_interval(r.difference, r.low, r.high, signed=True)
                                          for r in pairs.itertuples()],
                          "P(A > B)": pairs["p_better"].astype(float).round(3)})
    verdict = yes_no(pairs["low"] > 0)
    table["distinguishable"] = verdict if training_measured else verdict.map(
        {"yes": "test images only", "no": "no"})
    return table


def ranks_table(ranks: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"template": ranks.index, "mean rank": ranks["mean rank"].values,
                         "datasets won": ranks["wins"].values,
                         "Average segm mAP [95%]": [with_interval(r.average, r.low, r.high)
                                                    for r in ranks.itertuples()]})


def tradeoff_table(tradeoff: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"template": tradeoff["template"],
                         "Average segm mAP [95%]": [with_interval(r.accuracy, r.low, r.high)
                                                    for r in tradeoff.itertuples()],
                         "Latency (ms)": tradeoff["latency_ms"], "measured on": tradeoff["measured_on"],
                         "Pareto front": yes_no(tradeoff["pareto"])})


def ir_table(rows: pd.DataFrame, label) -> pd.DataFrame:
    table = pd.DataFrame({"template": rows["template"], "dataset": rows["dataset"],
                          "runtime": rows["runtime"].map(label), "segm mAP": rows["segm_map"],
                          "IR - PyTorch [95%]": [with_interval(r.minus_pytorch, r.low, r.high, signed=True)
                                                 for r in rows.itertuples()],
                          "P(IR > PyTorch)": rows["p_better"].round(3),
                          "IR - FP32": rows["minus_fp32"]})
    if rows["int8_loses"].any():
        table["note"] = rows["int8_loses"].map({True: "INT8 loses more than 1.5 points", False: ""})
    return table


def speed_table(rows: pd.DataFrame, label) -> pd.DataFrame:
    table = pd.DataFrame({"template": rows["template"], "runtime": rows["runtime"].map(label),
                          "latency (ms)": rows["latency_ms"]})
    if "throughput_fps" in rows:
        table["throughput (img/s)"] = rows["throughput_fps"]
    table["speed-up over PyTorch"] = rows["speedup"]
    if "inference_precision" in rows:
        table["computed in"] = rows["inference_precision"]
    return table


def deploy_table(rows: pd.DataFrame, label) -> pd.DataFrame:
    return rows.assign(runtime=rows["runtime"].map(label)).rename(columns={"f1": "F1"})


def dap_table(daps: pd.DataFrame) -> pd.DataFrame:
    """template, dataset, then one column per error type: 'dAP [low, high]'."""
    shown = daps.assign(text=[with_interval(r.dap, r.low, r.high) for r in daps.itertuples()])
    table = shown.pivot_table(index=["template", "dataset"], columns="error", values="text", aggfunc="first",
                              sort=False)
    return table.reindex(columns=list(dict.fromkeys(daps["error"]))).reset_index()


def runtime_table(rows: pd.DataFrame, label) -> pd.DataFrame:
    return rows.assign(runtime=rows["runtime"].map(label)) if len(rows) else rows


def noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    return noise.rename(columns={"between-seed std": "between-seed std of one training (points)"})


def side_by_side_table(rows: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """template, then per dataset and on average: 'ms [low, high]' and the time over the reference's."""
    def cell(r):
        text = f"{r.latency:.1f} [{r.low:.1f}, {r.high:.1f}]" if not pd.isna(r.low) else number(r.latency)
        if reference and r.template != reference and not pd.isna(r.ratio):
            text += f", {r.ratio:.2f}x [{r.ratio_low:.2f}, {r.ratio_high:.2f}]"
        return text
    shown = rows.assign(text=[cell(r) for r in rows.itertuples()])
    table = shown.pivot(index="template", columns="column", values="text")
    return table.reindex(index=list(dict.fromkeys(rows["template"])),
                         columns=list(dict.fromkeys(rows["column"]))).reset_index()


def ranking_table(changes: pd.DataFrame, label: str) -> pd.DataFrame:
    """Pairs whose order at the target differs from PyTorch's, both differences with their intervals."""
    return pd.DataFrame({"dataset": changes["dataset"], "A (better in PyTorch)": changes["A"], "B": changes["B"],
                         "A - B, PyTorch [95%]": [with_interval(r.pytorch, r.pytorch_low, r.pytorch_high, signed=True)
                                                  for r in changes.itertuples()],
                         f"A - B, {label} [95%]": [with_interval(r.target, r.target_low, r.target_high, signed=True)
                                                   for r in changes.itertuples()],
                         "reversed beyond both noises": yes_no(changes["distinguishable"])})


SIZE_COLUMNS = {"all": "segm mAP", "small": "AP small", "medium": "AP medium", "large": "AP large"}


def size_table(rows: pd.DataFrame, latency: dict) -> pd.DataFrame:
    """dataset, template, segm mAP and AP small / medium / large ('point ± std [low, high]'; '-' where the test
    split has no object of that size), latency in ms (`latency`: (template, dataset) -> ms)."""
    shown = rows.assign(text=[with_interval(r.point, r.low, r.high, r.seed_std) or "-" for r in rows.itertuples()])
    table = shown.pivot_table(index=["dataset", "template"], columns="size", values="text", aggfunc="first",
                              sort=False).reindex(columns=list(SIZE_COLUMNS)).fillna("-")
    table["latency, ms"] = [number(latency.get((t, d)), 2) for d, t in table.index]
    return table.rename(columns=SIZE_COLUMNS).reset_index()


def difference_table(pairs: pd.DataFrame, label: str, training_measured: bool) -> pd.DataFrame:
    """dataset, A, B, '<label>, A - B [95%]', P(A > B), distinguishable (beyond both noises, or the test images'
    alone when no training noise was measured)."""
    table = pairs_table(pairs, training_measured)
    return table.rename(columns={"A - B [95%]": f"{label}, A - B [95%]"})


def object_sizes_table(sizes: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"dataset": sizes["dataset"], "split": sizes["split"], "objects": sizes["objects"],
                         "side, px: 10% / median / 90%": [f"{r.side_p10:.0f} / {r.side_median:.0f} / {r.side_p90:.0f}"
                                                          for r in sizes.itertuples()],
                         "median side, % of the image's": sizes["relative_median"],
                         "under 32 x 32 px, %": sizes["small"]})


def small_at_input_table(shares: pd.DataFrame) -> pd.DataFrame:
    """template, input, then one column per dataset: % of its test objects under COCO's small at that input."""
    table = shares.pivot_table(index=["template", "input"], columns="dataset", values="small", sort=False)
    return table.reset_index()


KEY_COLUMNS = ("dataset", "runtime", "rung", "epoch")  # what a row is about, not a value measured


def with_stopped(markdown_table: str, table: pd.DataFrame, stopped: dict) -> str:
    """`markdown_table` (of `table`, one row per template or per template and dataset: a `model` or `template`
    column) with a row for each template the race stopped that it lacks, reading "stopped at epoch e of E": a stopped
    template is never missing from a table, nor shown as 0. Rows added as markdown keep the table's numbers
    formatted as they are."""
    column = next((c for c in ("model", "template") if c in table.columns), None)
    missing = [t for t in stopped if column and t not in set(table[column])]
    values = [c for c in table.columns if c not in (column,) + KEY_COLUMNS]
    if not missing or not values:
        return markdown_table
    rows = [[t if c == column else describe(stopped[t]) if c == values[0] else "all" if c in KEY_COLUMNS else ""
             for c in table.columns] for t in missing]
    return "\n".join([markdown_table] + ["| " + " | ".join(row) + " |" for row in rows])


def race_table(standings: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "rung": [f"{f:.0%}" for f in standings["rung"]], "template": standings["template"],
        "epoch": standings["epoch"],
        "validation average [95%]": [with_interval(r.average, r.low, r.high) for r in standings.itertuples()],
        "leader - template [95%]": [with_interval(r.behind, r.behind_low, r.behind_high, signed=True) or ""
                                    for r in standings.itertuples()],
        "P(leader better)": ["" if pd.isna(p) else f"{p:.3f}" for p in standings["p_leader"]],
        "verdict": standings["verdict"]})
