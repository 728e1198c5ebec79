"""Which template, and how sure: statistics over the bootstrap replicates each cell's evaluation wrote.

Replicate b of every cell on a dataset is scored on the same resampled test images (pipelines.confidence),
so differences between templates are paired replicate by replicate. With several training seeds, a
replicate of a template's seed mean also draws the seeds with replacement, so its spread holds both the
test-image noise and the training noise.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.confidence import interval, win_share


def load_replicates(metrics_dir: Path, cells: dict, name: str, value: str) -> dict:
    """`{(template, dataset): [seeds, B] array}` of the `value` replicates in each cell's file `name`; a
    template x dataset with any seed's file missing is left out. `cells` maps (template, dataset) to the
    folder names of its seeds."""
    found = {}
    for key, folders in cells.items():
        paths = [metrics_dir / folder / name for folder in folders]
        if all(p.is_file() for p in paths):
            found[key] = np.array([json.loads(p.read_text())[value] for p in paths], dtype=float)
    return found


def seed_mean_replicates(replicates: np.ndarray, template: str, seed: int) -> np.ndarray:
    """`[B]` replicates of the mean over seeds: replicate b averages replicate b of seeds drawn with
    replacement (one seed: its replicates as they are). The draws depend on `seed` and the template only."""
    seeds, count = replicates.shape
    if seeds == 1:
        return replicates[0]
    rng = np.random.default_rng([seed, zlib.crc32(template.encode())])
    picks = rng.integers(0, seeds, size=(count, seeds))
    return replicates[picks, np.arange(count)[:, None]].mean(axis=1)


class Comparison:
    """Points (seed means) and replicates of one metric per template x dataset, and what follows from them."""

    def __init__(self, points: pd.DataFrame, replicates: dict, seed: int):
        """`points`: template x dataset table of seed means; `replicates`: see `load_replicates`."""
        self.points = points
        self.replicates = {key: seed_mean_replicates(r, key[0], seed) for key, r in replicates.items()}

    def _average(self, template: str) -> np.ndarray | None:
        """Replicates of the template's average over datasets (None if a dataset has none)."""
        rows = [self.replicates.get((template, d)) for d in self.points.columns]
        return None if any(r is None for r in rows) else np.mean(rows, axis=0)

    def replicates_of(self, template: str, dataset: str) -> np.ndarray | None:
        return self._average(template) if dataset == "average" else self.replicates.get((template, dataset))

    def point(self, template: str, dataset: str) -> float:
        row = self.points.loc[template]
        return row.mean(skipna=False) if dataset == "average" else row[dataset]

    def interval(self, template: str, dataset: str) -> tuple:
        found = self.replicates_of(template, dataset)
        return interval(found) if found is not None and np.isfinite(found).any() else (np.nan, np.nan)

    def difference(self, a: str, b: str, dataset: str) -> dict:
        """A - B on `dataset` (or "average"): the point difference, its paired interval and P(A > B)."""
        first, second = self.replicates_of(a, dataset), self.replicates_of(b, dataset)
        point = self.point(a, dataset) - self.point(b, dataset)
        if first is None or second is None:
            return {"difference": point, "low": np.nan, "high": np.nan, "p_better": np.nan}
        low, high = interval(first - second)
        return {"difference": point, "low": low, "high": high, "p_better": win_share(first - second)}

    def pairs_table(self) -> pd.DataFrame:
        """Every dataset (and the average) x ordered pair of templates, better one first."""
        rows = []
        templates = list(self.points.index)
        for dataset in list(self.points.columns) + ["average"]:
            for i, a in enumerate(templates):
                for b in templates[i + 1:]:
                    found = self.difference(a, b, dataset)
                    if found["difference"] < 0:
                        a, b = b, a
                        found = self.difference(a, b, dataset)
                    rows.append({"dataset": dataset, "A": a, "B": b, **found})
        return pd.DataFrame(rows, columns=["dataset", "A", "B", "difference", "low", "high", "p_better"])

    def ranks_table(self) -> pd.DataFrame:
        """Per template: its mean rank over datasets (1 = best segm mAP, ties share), the datasets it wins, and
        its average with the interval."""
        ranks = self.points.rank(axis=0, ascending=False, method="average")
        table = pd.DataFrame({"mean rank": ranks.mean(axis=1), "wins": (ranks == 1).sum(axis=1)})
        table["average"] = [self.point(t, "average") for t in table.index]
        table[["low", "high"]] = [self.interval(t, "average") for t in table.index]
        return table.sort_values(["mean rank", "average"], ascending=[True, False])

    def group_of_best(self, dataset: str) -> tuple[str | None, list]:
        """The template with the best point on `dataset` (or "average") and those whose paired difference from
        it has an interval reaching 0 (statistically indistinguishable), best first."""
        values = pd.Series({t: self.point(t, dataset) for t in self.points.index}).dropna()
        if values.empty:
            return None, []
        best = values.idxmax()
        tied = [t for t in values.sort_values(ascending=False).index
                if t != best and not self.difference(best, t, dataset)["low"] > 0]
        return best, tied


def recommendation(comparison: Comparison, latency: pd.DataFrame, metric: str = "segm mAP") -> list:
    """Sentences a person can act on, from the numbers: the overall choice, then one line per dataset.

    `latency`: template x dataset table of batch-1 latency (ms); its row mean ranks templates overall."""
    def fastest(candidates: list, dataset: str) -> str:
        column = latency.mean(axis=1) if dataset == "average" else latency[dataset]
        timed = column.reindex(candidates).dropna()
        return timed.idxmin() if len(timed) else candidates[0]

    def describe(template: str, dataset: str) -> str:
        low, high = comparison.interval(template, dataset)
        bounds = "" if np.isnan(low) else f" [{low:.1f}, {high:.1f}]"
        return f"`{template}` ({comparison.point(template, dataset):.1f}{bounds})"

    def gap(template: str) -> str:
        found = comparison.difference(best, template, "average")
        bounds = "no interval" if np.isnan(found["low"]) else f"[{found['low']:.1f}, {found['high']:.1f}]"
        return f"`{template}` {found['difference']:+.1f} {bounds}"

    best, tied = comparison.group_of_best("average")
    if best is None:
        return ["No template has a complete set of results yet: nothing to recommend."]
    lines = []
    if len(comparison.points.index) == 1:
        lines.append(f"Only {describe(best, 'average')} ran: select more templates in `run.templates` to compare.")
    elif not tied:
        lines.append(f"**Fine-tune {describe(best, 'average')}**: it has the best average {metric}, and every "
                     "other template is below it beyond the 95% paired bootstrap interval.")
    else:
        choice = fastest([best] + tied, "average")
        differences = ", ".join(gap(t) for t in tied)
        lines.append(f"{describe(best, 'average')} has the best average {metric}, but the test sets cannot tell it "
                     f"apart from {', '.join(f'`{t}`' for t in tied)} (best minus each, 95% paired bootstrap "
                     f"interval reaching 0: {differences}). **Fine-tune `{choice}`**, the fastest of them"
                     + (" (it is also the most accurate)." if choice == best else
                        f"; take `{best}` only if its lead, which may be noise, is worth the extra latency."))
    lines.append("Per dataset (best, then those indistinguishable from it, then the fastest of that group):")
    for dataset in comparison.points.columns:
        best, tied = comparison.group_of_best(dataset)
        if best is None:
            lines.append(f"- {dataset}: not run.")
            continue
        group = ", ".join(f"`{t}`" for t in tied) if tied else "none"
        lines.append(f"- {dataset}: best {describe(best, dataset)}; indistinguishable: {group}; choose "
                     f"`{fastest([best] + tied, dataset)}`.")
    return lines
