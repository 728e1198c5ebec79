"""Which template, and how sure: intervals that hold both noises of a benchmark number, and verdicts from them.

A template's number on a dataset is the mean over its training seeds of the test mAP, and it moves for two
reasons:
- the test images: another test set of the same size would score differently. Each cell's evaluation wrote
  bootstrap replicates of its mAP over resampled test images (pipelines.confidence), the same resamples for
  every cell of a dataset, so replicate b of two templates is scored on the same images (paired);
- the training: another seed trains another model. With 2 or 3 seeds a template's own between-seed variance on
  a dataset is a poor estimate, so it is pooled twice. Over the templates of each dataset (`pooled`: the seeds'
  sample variances weighted by their degrees of freedom); then over datasets by empirical Bayes (`moderated`, Smyth's
  moderated variances, as limma does for genes): the datasets' variances are taken as draws from one scaled
  inverse chi-square distribution whose scale and degrees of freedom are estimated from their spread, and each
  dataset's estimate is shrunk towards that scale as far as the spread allows. Datasets as different as their
  few seeds can tell keep their own variance; datasets that look alike share one with many degrees of freedom.
  Its uncertainty is carried by drawing, per replicate, a variance from the dataset's (posterior) scaled inverse
  chi-square distribution and a normal deviation with it, scaled to the number of seeds: for a difference of
  two templates on one dataset this is a t interval of the seed means, widened by the paired test-image spread.
Each interval is the 2.5 and 97.5 percentiles of the replicates, kept within 0..100; a difference whose interval
excludes 0 survives both noises and is "distinguishable". With a single seed nothing measures the training
noise: intervals are the test images' alone and every verdict says so (`Comparison.training_measured`).

The draws depend on the confidence seed, the dataset and the template's own seed points, not on names: the same
results give the same intervals, and two templates whose results are identical (the same trained models under two
names, e.g. an experiment that changed nothing against its baseline) get identical replicates and differ by
exactly 0, while any two that trained differently get independent training deviations.
"""

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma, polygamma

from pipelines.confidence import interval, win_share


@dataclass(frozen=True)
class Measured:
    """One template on one dataset: the test metric of each seed and their bootstrap replicates `[seeds, B]`."""
    points: np.ndarray
    replicates: np.ndarray


@dataclass(frozen=True)
class Noise:
    """A between-seed variance of one training's metric and its degrees of freedom (inf: taken as known)."""
    variance: float
    df: float


def pooled(measured: dict, dataset: str) -> Noise:
    """Between-seed variance on `dataset` (`measured`: `{(template, dataset): Measured}`), pooled over its
    templates; df 0 when no template has two seeds."""
    found = [m.points for (_, d), m in measured.items() if d == dataset and len(m.points) > 1]
    df = sum(len(p) - 1 for p in found)
    return Noise(float(sum((len(p) - 1) * np.var(p, ddof=1) for p in found) / df) if df else 0.0, df)


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x, by Newton's method (Smyth 2004)."""
    y = 0.5 + 1 / x
    for _ in range(50):
        trigamma = float(polygamma(1, y))
        step = trigamma * (1 - trigamma / x) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


@dataclass(frozen=True)
class Prior:
    """Where the datasets' variances come from: a scaled inverse chi-square distribution (Smyth's prior), or one
    variance they all share (`shared`: their spread is no more than sampling alone makes)."""
    noise: Noise
    shared: bool


def prior(noises: list) -> Prior | None:
    """The distribution the datasets' variances are drawn from, by Smyth's moments of the log variances; None
    with fewer than 3 datasets measured, too few to estimate it."""
    found = [n for n in noises if n.df > 0 and n.variance > 0]
    if len(found) < 3:
        return None
    half = np.array([n.df / 2 for n in found])
    e = np.log([n.variance for n in found]) - digamma(half) + np.log(half)
    excess = np.var(e, ddof=1) - np.mean(polygamma(1, half))
    if excess <= 0:  # one variance for all: pooled over every dataset, with all their degrees of freedom
        df = sum(n.df for n in noises)
        return Prior(Noise(sum(n.df * n.variance for n in noises) / df, df), shared=True)
    df = 2 * _trigamma_inverse(float(excess))
    return Prior(Noise(float(np.exp(e.mean() + digamma(df / 2) - np.log(df / 2))), df), shared=False)


def moderated(own: Noise, common: Prior | None) -> Noise:
    """A dataset's variance shrunk towards the datasets' common distribution (its posterior scale and df)."""
    if common is None:
        return own
    if common.shared:
        return common.noise
    df = common.noise.df + own.df
    return Noise((common.noise.df * common.noise.variance + own.df * own.variance) / df, df)


def _rng(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def variance_draws(noise: Noise, count: int, seed: int, dataset: str) -> np.ndarray:
    """`[count]` variances of the training noise of `dataset` from its scaled inverse chi-square distribution."""
    if noise.df == 0 or noise.variance == 0:
        return np.zeros(count)
    if np.isinf(noise.df):
        return np.full(count, noise.variance)
    return noise.variance * noise.df / _rng(seed, "variance", dataset).chisquare(noise.df, size=count)


def combined_replicates(measured: Measured, variances: np.ndarray, seed: int, dataset: str) -> np.ndarray:
    """`[B]` replicates of the seed mean under both noises: test-image replicate b of the seed mean plus a
    training deviation drawn with variance b over the number of seeds."""
    test = measured.replicates.mean(axis=0)
    content = np.round(measured.points, 4).tobytes().hex()  # identical results, identical draws
    deviations = _rng(seed, "deviation", dataset, content).standard_normal(len(test))
    return np.clip(test + deviations * np.sqrt(variances / len(measured.points)), 0, 100)


class Comparison:
    """Points (seed means) and replicates of one metric per template x dataset, and what follows from them."""

    def __init__(self, measured: dict, templates: list, datasets: list, seed: int):
        """`measured`: `{(template, dataset): Measured}`; a template x dataset missing from it has not run (or not
        fully)."""
        self.templates, self.datasets, self.seed = list(templates), list(datasets), seed
        self.points = pd.DataFrame(
            [[measured[(t, d)].points.mean() if (t, d) in measured else np.nan for d in self.datasets]
             for t in self.templates], index=self.templates, columns=self.datasets)
        self.own_noise = {d: pooled(measured, d) for d in self.datasets}
        self.common_noise = prior(list(self.own_noise.values()))
        self.noise = {d: moderated(n, self.common_noise) for d, n in self.own_noise.items()}
        self.replicates = {}
        for (template, dataset), found in measured.items():
            variances = variance_draws(self.noise[dataset], found.replicates.shape[1], seed, dataset)
            self.replicates[(template, dataset)] = combined_replicates(found, variances, seed, dataset)

    @property
    def training_measured(self) -> bool:
        """True when every dataset's training noise was measured (some template ran two seeds or more)."""
        return all(n.df > 0 for n in self.noise.values())

    def noise_table(self) -> pd.DataFrame:
        """Per dataset: the between-seed standard deviation of one training pooled over templates and its degrees
        of freedom, then as used (shrunk towards the datasets' common distribution), and theirs."""
        def std(noise: Noise):
            return np.sqrt(noise.variance) if noise.df else np.nan
        return pd.DataFrame({"dataset": self.datasets,
                             "own std": [std(self.own_noise[d]) for d in self.datasets],
                             "own df": [self.own_noise[d].df for d in self.datasets],
                             "std used": [std(self.noise[d]) for d in self.datasets],
                             "df used": [self.noise[d].df for d in self.datasets]})

    def _average(self, template: str) -> np.ndarray | None:
        """Replicates of the template's average over datasets (None if a dataset has none)."""
        rows = [self.replicates.get((template, d)) for d in self.datasets]
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
        for dataset in self.datasets + ["average"]:
            for i, a in enumerate(self.templates):
                for b in self.templates[i + 1:]:
                    first, second = (b, a) if self.difference(a, b, dataset)["difference"] < 0 else (a, b)
                    rows.append({"dataset": dataset, "A": first, "B": second,
                                 **self.difference(first, second, dataset)})
        return pd.DataFrame(rows, columns=["dataset", "A", "B", "difference", "low", "high", "p_better"])

    def ranks_table(self) -> pd.DataFrame:
        """Per template: its mean rank over datasets (1 = best, ties share), the datasets it wins, and its
        average with the interval."""
        ranks = self.points.rank(axis=0, ascending=False, method="average")
        table = pd.DataFrame({"mean rank": ranks.mean(axis=1), "wins": (ranks == 1).sum(axis=1)})
        table["average"] = [self.point(t, "average") for t in table.index]
        table[["low", "high"]] = [self.interval(t, "average") for t in table.index]
        return table.sort_values(["mean rank", "average"], ascending=[True, False])

    def group_of_best(self, dataset: str, among: list | None = None) -> tuple[str | None, list]:
        """The template with the best point on `dataset` (or "average") and those whose paired difference from
        it has an interval reaching 0 (not distinguishable), best first; `among`: only these templates."""
        values = pd.Series({t: self.point(t, dataset) for t in among or self.templates}).dropna()
        if values.empty:
            return None, []
        best = values.idxmax()
        tied = [t for t in values.sort_values(ascending=False).index
                if t != best and not self.difference(best, t, dataset)["low"] > 0]
        return best, tied

