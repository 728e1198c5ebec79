"""Configurations compared across experiments, with the statistics the report uses within a run.

    python -m pipelines.experiments              # the workspace against HEAD, and every experiment of
                                                 # `dvc exp show` against its baseline commit
    python -m pipelines.experiments A B [C ...]  # B, C ... against A (experiment names or git revisions)

For every template both ran, per dataset both ran and on their average: test segm mAP in each, the difference
with its paired 95% interval (test images and training seeds, as pipelines.comparison computes them) and
P(B > A), and the same difference of AP small (objects under 32 x 32 px: what tiling is for); and the params
that differ. Each experiment's files are read through DVC (git and the DVC cache, the
workspace for the workspace): nothing is checked out. Two experiments pair only when their test splits and
resample settings are the same; otherwise the pair is refused with a message saying which.
"""

import argparse
import hashlib
import json
import sys

import pandas as pd
import yaml
from dvc.api import DVCFileSystem, exp_show

from pipelines import cells
from pipelines.cli import run
from pipelines.comparison import Comparison, Measured
from pipelines.report import collect
from pipelines.splits import PREPARED, TEST, split_file

WORKSPACE = "workspace"


class Revision:
    """One experiment, commit or the workspace, read through DVC."""

    def __init__(self, name: str, rev: str | None):
        self.name, self.rev = name, rev
        self.fs = DVCFileSystem(".", rev=rev)
        self.params = yaml.safe_load(self.fs.read_text("params.yaml"))

    def read(self, path) -> str | None:
        try:
            return self.fs.read_text(str(path))
        except (FileNotFoundError, OSError):
            return None

    def read_json(self, path) -> dict:
        """A JSON file's contents, {} where it is missing (as pipelines.report.collect reads them)."""
        found = self.read(path)
        return json.loads(found) if found is not None else {}

    @property
    def templates(self) -> list:
        return [t for names in self.params["run"]["templates"].values() for t in names or []]

    @property
    def stopped(self) -> dict:
        """template -> the epoch the race stopped it at, as the report's summary.json records it."""
        return self.read_json("reports/summary.json").get("race", {}).get("stopped", {})

    def test_split(self, dataset: str) -> str | None:
        """The sha256 of the dataset's prepared test split: what pairing needs to be the same."""
        found = self.read(split_file(PREPARED / dataset, TEST))
        return hashlib.sha256(found.encode()).hexdigest() if found is not None else None

    def measured(self, template: str, dataset: str, metric: str = "segm_map") -> Measured | None:
        """Each seed's test `metric` (segm_map, segm_map_small, ...) and its bootstrap replicates, as the report reads
        them; None if any seed's files are missing or the split holds nothing of that size."""
        found = collect.measured(cells.METRICS, [template], [dataset], self.params["run"]["seeds"], cells.PYTORCH,
                                 metric, read=self.read_json)
        return found.get((template, dataset))


def flat(values, prefix="") -> dict:
    if isinstance(values, dict):
        return {k: v for key, value in values.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): values}


def params_diff(a: Revision, b: Revision) -> list:
    first, second = flat(a.params), flat(b.params)
    return [f"{key}: {first.get(key)!r} -> {second.get(key)!r}" for key in sorted(set(first) | set(second))
            if first.get(key) != second.get(key)]


def unpairable(a: Revision, b: Revision, datasets: list) -> str | None:
    """Why `a` and `b` cannot be compared draw by draw, or None."""
    if a.params["confidence"] != b.params["confidence"]:
        return f"their resample settings differ (confidence: {a.params['confidence']} against {b.params['confidence']})"
    differ = [d for d in datasets if a.test_split(d) != b.test_split(d)]
    return f"their test splits differ ({', '.join(differ)})" if differ else None


def comparison(a: Revision, b: Revision, datasets: list, metric: str = "segm_map") -> pd.DataFrame:
    """template, dataset (and average), A, B, B - A, low, high, P(B > A) of `metric` for every template both ran."""
    rows = []
    for template in [t for t in b.templates if t in a.templates]:
        found = {(f"{r.name}:{template}", d): r.measured(template, d, metric) for r in (a, b) for d in datasets}
        if any(v is None for v in found.values()):
            continue
        compared = Comparison(found, [f"{a.name}:{template}", f"{b.name}:{template}"], datasets,
                              int(a.params["confidence"]["seed"]))
        for dataset in datasets + ["average"]:
            gap = compared.difference(f"{b.name}:{template}", f"{a.name}:{template}", dataset)
            rows.append({"template": template, "dataset": dataset,
                         "A": compared.point(f"{a.name}:{template}", dataset),
                         "B": compared.point(f"{b.name}:{template}", dataset), **gap})
    return pd.DataFrame(rows, columns=["template", "dataset", "A", "B", "difference", "low", "high", "p_better"])


def benchmarked(params: dict) -> list:
    """The datasets a revision's params benchmark: run.datasets, or (before it existed) every dataset."""
    return list(params.get("run", {}).get("datasets") or params["datasets"])


def report(a: Revision, b: Revision) -> str:
    """The comparison of `b` against `a` as text."""
    datasets = [d for d in benchmarked(b.params) if d in benchmarked(a.params)]
    lines = [f"## {b.name} against {a.name}", "", "Params that differ: " + ("; ".join(params_diff(a, b)) or "none")]
    why = unpairable(a, b, datasets)
    if why:
        return "\n".join(lines + ["", f"Not compared: {why}, so their replicates do not pair."])
    raced = [f"{t} ({r.name}: stopped at epoch {r.stopped[t]})" for r in (a, b) for t in r.templates
             if t in r.stopped]
    if raced:  # a template the race stopped has no test numbers there
        lines += ["", "Stopped by the race, so not compared on test: " + ", ".join(raced) + "."]
    table = comparison(a, b, datasets)
    if table.empty:
        return "\n".join(lines + ["", "No template with complete results in both."])
    # AP small (tiling's target) beside segm mAP, where both measured it on every dataset compared.
    small = comparison(a, b, datasets, "segm_map_small").set_index(["template", "dataset"])
    shown = pd.DataFrame({
        "template": table["template"], "dataset": table["dataset"], f"{a.name}": table["A"].round(1),
        f"{b.name}": table["B"].round(1),
        "B - A [95%]": [f"{r.difference:+.1f} [{r.low:.1f}, {r.high:.1f}]" for r in table.itertuples()],
        "P(B > A)": table["p_better"].round(3),
        "AP small, B - A [95%]": [_gap(small, r.template, r.dataset) for r in table.itertuples()]})
    return "\n".join(lines + ["", shown.to_markdown(index=False)])


def _gap(table: pd.DataFrame, template: str, dataset: str) -> str:
    """'B - A [low, high]' of `table` (indexed by template and dataset), '-' where it was not compared."""
    if (template, dataset) not in table.index:
        return "-"
    found = table.loc[(template, dataset)]
    return f"{found.difference:+.1f} [{found.low:.1f}, {found.high:.1f}]"


def default_pairs() -> list:
    """(baseline, experiment) revisions: the workspace against HEAD, then every finished experiment of `dvc exp
    show` against its baseline commit (its rows follow their baseline's)."""
    pairs, baseline = [(("HEAD", "HEAD"), (WORKSPACE, None))], None
    for row in exp_show(repo="."):
        if row.get("typ") == "baseline":
            baseline = row["rev"]
        elif row.get("Experiment") and baseline not in (None, WORKSPACE) and \
                row.get("State") not in ("Queued", "Running", "Failed"):
            pairs.append(((baseline, baseline), (row["Experiment"], row["Experiment"])))
    return pairs


def main(args=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revisions", nargs="*", help="the baseline, then the experiments to compare with it")
    a = p.parse_args(args)
    if len(a.revisions) == 1:
        sys.exit("compare: name the baseline and at least one experiment, or nothing for the defaults")
    pairs = [((a.revisions[0], a.revisions[0]), (r, r)) for r in a.revisions[1:]] if a.revisions else default_pairs()
    opened = {}
    for (first, second) in pairs:
        base = opened.setdefault(first, Revision(*first))
        other = opened.setdefault(second, Revision(*second))
        print(report(base, other) + "\n")


if __name__ == "__main__":
    run(main)
