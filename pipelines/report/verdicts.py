"""The recommendation and why a template wins: sentences a person can act on, generated from the numbers.

The phrases are here, filled from the numbers; the report's fixed prose is in template.md.
"""

import numpy as np
import pandas as pd

from pipelines.comparison import SAME_COMPUTE, SAME_SPEED, Comparison, choose, quick

UNMEASURED = ("Training noise was not measured (one seed per cell): the intervals hold the test images' noise only, "
              "so a difference called distinguishable here may be one training run's luck. Run two seeds or more "
              "(`-S 'run.seeds=[0,1]'`) to measure it.")
ONLY_ONE = "Only {best} ran: select more templates in `run.templates` to compare."
CLEAR = ("**Fine-tune {best}**: it has the best average {metric}, and every other template is below it beyond the 95% "
         "interval of the paired difference ({noises}).")
TIED = ("{best} has the best average {metric}, but {noises_subject} tell it apart from {others} (best minus each, "
        "95% interval reaching 0: {gaps}). **Fine-tune `{choice}`**, {why}.")
WHY_FASTEST = (f"the fastest of them by more than {SAME_SPEED:.0%}; take `{{best}}` only if its lead, which may be "
               "noise, is worth the extra latency")
WHY_SAME_SPEED = (f"though any of them would do: they also run at the same speed (latencies within {SAME_SPEED:.0%}, "
                  "this machine's timing noise), and it needs the least compute")
WHY_FIRST = (f"though any of them would do: they also run at the same speed (latencies within {SAME_SPEED:.0%}, this "
             f"machine's timing noise) on the same compute (GFLOPs within {SAME_COMPUTE:.0%}), and it comes first in "
             "`run.templates`")
WHY_BEST = "the fastest of them and also the most accurate"
PER_DATASET = "Per dataset (best, then those indistinguishable from it, then the choice among them):"
DATASET_LINE = "- {dataset}: best {best}; indistinguishable: {group}; choose `{choice}`."


def _describe(compared: Comparison, template: str, dataset: str) -> str:
    low, high = compared.interval(template, dataset)
    bounds = "" if np.isnan(low) else f" [{low:.1f}, {high:.1f}]"
    return f"`{template}` ({compared.point(template, dataset):.1f}{bounds})"


def _gap(compared: Comparison, best: str, template: str) -> str:
    found = compared.difference(best, template, "average")
    bounds = "no interval" if np.isnan(found["low"]) else f"[{found['low']:.1f}, {found['high']:.1f}]"
    return f"`{template}` {found['difference']:+.1f} {bounds}"


def _why(choice: str, best: str, tied: list, latency: pd.Series, gflops: pd.Series) -> str:
    equals = quick([best] + tied, latency)
    if len(equals) > 1:
        costs = gflops.reindex(equals)
        return WHY_FIRST if (costs <= costs.min() * (1 + SAME_COMPUTE)).sum() > 1 else WHY_SAME_SPEED
    return WHY_BEST if choice == best else WHY_FASTEST.format(best=best)


def overall(compared: Comparison, latency: pd.Series, gflops: pd.Series, metric: str) -> str:
    """The first sentence: which template to fine-tune, and how sure. `latency`, `gflops`: per template."""
    best, tied = compared.group_of_best("average")
    measured = compared.training_measured
    noises = "test images and training seeds" if measured else "test images only: training noise not measured"
    if len(compared.templates) == 1:
        return ONLY_ONE.format(best=_describe(compared, best, "average"))
    if not tied:
        return CLEAR.format(best=_describe(compared, best, "average"), metric=metric, noises=noises)
    choice = choose(best, tied, latency, gflops, compared.templates)
    return TIED.format(best=_describe(compared, best, "average"), metric=metric,
                       noises_subject="neither the test images nor the training seeds can" if measured
                       else "the test images (training noise not measured) cannot",
                       others=", ".join(f"`{t}`" for t in tied), gaps=", ".join(_gap(compared, best, t) for t in tied),
                       choice=choice, why=_why(choice, best, tied, latency, gflops))


def recommendation(compared: Comparison, latency: pd.Series, per_dataset: pd.DataFrame, gflops: pd.Series,
                   metric: str = "segm mAP") -> list:
    """The overall choice, then one line per dataset. `latency`: per template, the one the tradeoff table shows
    (ms); `per_dataset`: template x dataset (ms); `gflops`: per template."""
    if compared.group_of_best("average")[0] is None:
        return ["No template has a complete set of results yet: nothing to recommend."]
    lines = [] if compared.training_measured else [UNMEASURED]
    lines += [overall(compared, latency, gflops, metric), PER_DATASET]
    for dataset in compared.datasets:
        best, tied = compared.group_of_best(dataset)
        if best is None:
            lines.append(f"- {dataset}: not run.")
            continue
        lines.append(DATASET_LINE.format(dataset=dataset, best=_describe(compared, best, dataset),
                                         group=", ".join(f"`{t}`" for t in tied) if tied else "none",
                                         choice=choose(best, tied, per_dataset[dataset], gflops,
                                                       compared.templates)))
    return lines


# What to try against each error type (TIDE's): the hint that fits it.
HINTS = {
    "classification": "objects found but given the wrong class: more training images per class (or classes that "
                      "look alike merged)",
    "localisation": "objects found but their masks are off: a larger input size, a finer mask head or a longer "
                    "schedule",
    "both": "objects found with the wrong class and a poor mask at once: more images per class and a larger input",
    "duplicate": "objects detected twice: a lower NMS IoU threshold",
    "background": "detections on nothing: a higher score threshold, or more background in the training images",
    "missed_small": "objects not detected at all, most of them small (under 32 x 32 px): a larger input size or "
                    "tiling",
    "missed": "objects not detected at all: more proposals (RPN), more epochs, or anchors that fit their sizes",
}
WHY_LINE = ("- {dataset}: `{other}` is {gap:.1f} points of segm mAP behind `{best}`; {because}")
SEPARATES = ("what separates them most is {error}: fixing it would gain `{other}` {difference:+.1f} "
             "[{low:.1f}, {high:.1f}] points of mask AP50 more than `{best}`. That is {hint}.")
NOTHING_CLEAR = ("no error type separates them beyond both noises (the largest: {error}, {difference:+.1f} "
                 "[{low:.1f}, {high:.1f}]).")


def _hint(error: str, counts) -> str:
    if error == "missed" and counts is not None:
        small, total = counts.loc["missed", "small"], counts.loc["missed", "all"]
        return HINTS["missed_small"] if total and small / total > 0.5 else HINTS["missed"]
    return HINTS[error]


def why(separating: pd.DataFrame, counts: dict) -> list:
    """One line per dataset and template behind the best: the error type that separates them and what to try.
    `counts`: (template, dataset) -> error counts per size (pipelines.report.collect.deploy_errors)."""
    lines = []
    for row in separating.itertuples():
        values = dict(error=row.error, difference=row.difference, low=row.low, high=row.high, other=row.other,
                      best=row.best)
        found = counts.get((row.other, row.dataset), {}).get("counts")
        because = SEPARATES.format(**values, hint=_hint(row.error, found)) if row.distinguishable \
            else NOTHING_CLEAR.format(**values)
        lines.append(WHY_LINE.format(dataset=row.dataset, other=row.other, best=row.best, gap=row.gap,
                                     because=because))
    return lines or ["Only one template ran: nothing to explain."]
