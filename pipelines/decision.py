"""The recommendation, decided once: which template to fine-tune for where it will run, and what decided it.

Every template is judged at the deployment target (`deploy` in params.yaml): its accuracy as `validate` scored
the IR at that precision, its speed as the `speed` stage timed every template side by side. The criteria, in
order; each one counts only where its measurement separates the templates beyond its noise:

1. the latency budget: a template whose side-by-side latency is above the budget with its whole interval is
   not recommended (unless every template is);
2. accuracy: the best average segm mAP, and the templates whose paired difference from it has a 95% interval of
   both noises that reaches 0 (indistinguishable from it);
3. speed: among those, a template is set aside when another one is faster by more than SPEED_MARGIN with the
   whole 95% interval of their paired time ratio (the rounds of the side-by-side timing); a ratio whose interval
   straddles the margin is "borderline" and decides nothing;
4. compute: the fewest GFLOPs, unless within SAME_COMPUTE (counted, not timed: the same on every machine);
5. the order of `run.templates`.
Only the first two measure anything noisy, and each asks for its whole interval, so two runs of one commit
choose the same template unless a report says a criterion was borderline. The report, summary.json and every
section print the one `Decision` made here.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.comparison import Comparison
from pipelines.speed import SideBySide

# Side by side, the same two IRs time within a few percent of each other however busy the machine is; a
# template must be slower than this, with the whole interval of its time ratio, to lose on speed.
SPEED_MARGIN = 0.10
# GFLOPs within this share of each other count as the same compute (the class count alone moves them by ~1%).
SAME_COMPUTE = 0.05


@dataclass(frozen=True)
class Choice:
    """The choice on one column (a dataset, or "average") and how it was made."""
    template: str | None           # None: nothing ran
    decided_by: str                # nothing ran | only one ran | budget | accuracy | speed | compute | order
    best: str | None = None        # the most accurate (point) of the templates within budget
    tied: tuple = ()               # those the data cannot tell from `best`, best first
    slower: dict = field(default_factory=dict)       # template set aside -> (the faster one, Ratio of their times)
    borderline: dict = field(default_factory=dict)   # template -> (the other one, Ratio straddling the margin)
    over_budget: dict = field(default_factory=dict)  # template -> (median, low, high) ms
    gflops: dict = field(default_factory=dict)       # the compute of the templates the speed left


@dataclass(frozen=True)
class Decision:
    runtime: str                   # the deployment target: ir_<precision>
    overall: Choice                # on the average over datasets
    per_dataset: dict              # dataset -> Choice
    pytorch_choice: str | None     # what the same rules choose from the PyTorch models' accuracy
    ranking_changes: pd.DataFrame  # pairs whose order at the target differs from PyTorch's (ranking_changes)
    speeds: SideBySide | None      # None: the speed stage has not run
    budget_ms: float | None

    @property
    def template(self) -> str | None:
        return self.overall.template


def _speed_sets(group: list, speeds: SideBySide | None, column: str) -> tuple[dict, dict]:
    """(slower, borderline) among `group`: see the module's docstring, criterion 3."""
    slower, borderline = {}, {}
    if speeds is None:
        return slower, borderline
    for template in group:
        for other in group:
            found = speeds.ratio(other, template, column) if other != template else None
            if found is None or np.isnan(found.low):
                continue
            if found.low > 1 + SPEED_MARGIN:
                slower.setdefault(template, (other, found))
            elif found.high > 1 + SPEED_MARGIN and found.point > 1:
                borderline.setdefault(template, (other, found))
    return slower, {t: v for t, v in borderline.items() if t not in slower}


def choose(compared: Comparison, column: str, speeds: SideBySide | None, gflops: pd.Series, order: list,
           budget_ms: float | None = None) -> Choice:
    """The template to fine-tune on `column`, by the criteria of the module's docstring."""
    ran = [t for t in compared.templates if not np.isnan(compared.point(t, column))]
    if not ran:
        return Choice(None, "nothing ran")
    latencies = {t: speeds.latency(t, column) for t in ran} if budget_ms is not None and speeds is not None else {}
    over = {t: found for t, found in latencies.items() if found[1] > budget_ms}
    within = [t for t in ran if t not in over] or ran
    best, tied = compared.group_of_best(column, among=within)
    found = dict(best=best, tied=tuple(tied), over_budget=over)
    if len(ran) == 1:
        return Choice(best, "only one ran", **found)
    if len(within) == 1:
        return Choice(best, "budget", **found)
    if not tied:
        return Choice(best, "accuracy", **found)
    group = [best] + tied
    slower, borderline = _speed_sets(group, speeds, column)
    group = [t for t in group if t not in slower]
    found.update(slower=slower, borderline=borderline)
    if len(group) == 1:
        return Choice(group[0], "speed", **found)
    costs = gflops.reindex(group).fillna(np.inf)
    found["gflops"] = {t: float(costs[t]) for t in group}
    cheap = [t for t in group if costs[t] <= costs.min() * (1 + SAME_COMPUTE)]
    if len(cheap) == 1:
        return Choice(cheap[0], "compute", **found)
    listed = min(cheap, key=lambda t: order.index(t) if t in order else len(order))
    return Choice(listed, "order", **found)


def ranking_changes(pytorch: Comparison, target: Comparison) -> pd.DataFrame:
    """Every dataset (and the average) x pair of templates whose order at the target differs from PyTorch's: A is
    the better one in PyTorch; both differences A - B with their paired 95% intervals of both noises;
    `distinguishable` when the target's interval excludes 0 (the target reverses them beyond the noise)."""
    rows = []
    for column in pytorch.datasets + ["average"]:
        for i, a in enumerate(pytorch.templates):
            for b in pytorch.templates[i + 1:]:
                before, after = pytorch.difference(a, b, column), target.difference(a, b, column)
                if not (np.isfinite(before["difference"]) and np.isfinite(after["difference"])):
                    continue
                if np.sign(before["difference"]) * np.sign(after["difference"]) >= 0:
                    continue
                if before["difference"] < 0:
                    a, b = b, a
                    before, after = pytorch.difference(a, b, column), target.difference(a, b, column)
                rows.append({"dataset": column, "A": a, "B": b, "pytorch": before["difference"],
                             "pytorch_low": before["low"], "pytorch_high": before["high"],
                             "target": after["difference"], "target_low": after["low"],
                             "target_high": after["high"], "distinguishable": bool(after["high"] < 0)})
    return pd.DataFrame(rows, columns=["dataset", "A", "B", "pytorch", "pytorch_low", "pytorch_high", "target",
                                       "target_low", "target_high", "distinguishable"])


def decide(target: Comparison, pytorch: Comparison, runtime: str, speeds: SideBySide | None, gflops: pd.Series,
           order: list, budget_ms: float | None = None) -> Decision:
    """The one decision the report prints: `target` (the deployment runtime's comparison) decides, `pytorch`'s is
    set beside it. `speeds`: the speed stage's measurement (None if it has not run); `gflops`: per template."""
    if speeds is not None and speeds.runtime != runtime:
        speeds = None  # timed at another precision than the one deployed: it cannot decide
    pick = lambda compared, column: choose(compared, column, speeds, gflops, order, budget_ms)  # noqa: E731
    return Decision(runtime=runtime, overall=pick(target, "average"),
                    per_dataset={d: pick(target, d) for d in target.datasets},
                    pytorch_choice=pick(pytorch, "average").template,
                    ranking_changes=ranking_changes(pytorch, target), speeds=speeds, budget_ms=budget_ms)

