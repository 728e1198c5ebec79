"""Racing templates: after part of its training, a template clearly behind the leader is stopped.

A race has rungs, each a fraction of every template's own schedule: at rung f a surviving template has trained
ceil(f x its epochs) epochs (at least one) on every dataset and seed. There each cell counts with the best
validation segm mAP it has reached so far (the epoch a run stopped there would keep) and that epoch's bootstrap
replicates over the validation images (pipelines.training records both every epoch, on the same resamples for
every cell of a dataset). The templates are compared as the report compares test numbers (pipelines.comparison:
replicates paired over images, the seeds' training noise pooled over templates and datasets): on the average over
datasets, a template is stopped when the leader's paired 95% interval of (leader - template) lies wholly above
`margin` points ("behind"). A race that must also save on templates the noise cannot separate halves them, as
successive halving (ASHA, OTX's HPO) does: with `eta` above 1, of the n templates at a rung only the best
ceil(n / eta) by validation average go on, and any equal to the last of them ("halving": a stop for budget, not a
finding that the template is worse). A rung where the leader's interval still reaches 0 (a warm-up that detects
nothing yet) cuts nothing.
Templates listed in `keep` always go on, and so does a template whose whole schedule is within the rung (nothing of
its training is left to save). The test split plays no part.

Nothing here trains: `race` replays the policy over recorded curves, as the pipeline applies it at its rung
(stages/race.py, on the records of every cell trained to the rung) and as benchmarks/racing.py replays it over a
finished grid.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.comparison import Comparison, Measured
from pipelines.legs import rung_epoch


@dataclass(frozen=True)
class Epoch:
    """One epoch of one cell: its validation segm mAP, the replicates over validation images, its seconds."""
    epoch: int
    segm_map: float
    replicates: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Settings:
    rungs: tuple            # fractions of each template's schedule, increasing, below 1
    margin: float = 0.0     # points: stopped when the whole interval of (leader - template) is above it
    keep: tuple = ()        # templates that run to the end whatever happens
    seed: int = 0           # the comparison's seed (confidence.seed)
    eta: int = 1            # at each rung only the best ceil(n / eta) of its n templates go on (1: no limit)


@dataclass(frozen=True)
class Standing:
    """A template at a rung: the epoch it reached, its validation average over datasets with its interval, and
    its paired difference from the leader (None for the leader itself), its place by average (0: the leader) and
    why it stopped (BEHIND or HALVING; None: it goes on)."""
    template: str
    epoch: int
    average: float
    low: float
    high: float
    behind: dict | None
    stopped: bool
    place: int = 0
    why: str | None = None


BEHIND = "behind"      # stopped: behind the leader beyond both noises (and the margin)
HALVING = "halving"    # stopped: not among the best ceil(n / eta) at the rung, for budget


@dataclass
class Race:
    rungs: list = field(default_factory=list)     # [(fraction, [Standing, ...])]
    stopped: dict = field(default_factory=dict)   # template -> the epoch it stopped at
    finishers: list = field(default_factory=list)

    def epochs_spent(self, template: str, full: int) -> int:
        return self.stopped.get(template, full)


def settings(race_params: dict, seed: int) -> Settings:
    """The pipeline's race (params.yaml's `race`, one rung) with the comparisons' seed (confidence.seed)."""
    return Settings((race_params["rung"],), float(race_params["margin"]), tuple(race_params["keep"]), seed,
                    int(race_params["eta"]))


def curve(validation: dict) -> list:
    """A cell's [Epoch, ...] from its validation record (the train stage's validation.json)."""
    return [Epoch(e["epoch"], e["segm_map"], np.array(e["replicates"], float), e["seconds"])
            for e in validation["epochs"]]


def kept_by(curve: list, epoch: int) -> Epoch:
    """The epoch a run stopped after `epoch` keeps: the first with the best validation segm mAP so far."""
    reached = curve[:epoch]
    return max(reached, key=lambda e: (e.segm_map, -e.epoch))


def standings(curves: dict, templates: list, datasets: list, seeds: list, reached: dict, seed: int) -> Comparison:
    """The comparison of `templates` at the epochs `reached` ({template: epoch}) on the validation numbers.
    `curves`: {(template, dataset, seed): [Epoch, ...]}."""
    measured = {}
    for template in templates:
        for dataset in datasets:
            kept = [kept_by(curves[(template, dataset, s)], reached[template]) for s in seeds]
            measured[(template, dataset)] = Measured(np.array([k.segm_map for k in kept]),
                                                     np.stack([k.replicates for k in kept]))
    return Comparison(measured, templates, datasets, seed)


def stop_reason(template: str, behind: dict | None, below_the_cut: bool, trained: int, epochs: int,
                settings: Settings) -> str | None:
    """Why `template` stops at a rung (BEHIND, HALVING), or None: the leader, a kept template and one whose whole
    schedule is within the rung (no training left to save) go on."""
    if behind is None or template in settings.keep or trained >= epochs:
        return None
    if behind["low"] > settings.margin:
        return BEHIND
    return HALVING if below_the_cut else None


def race(curves: dict, templates: list, datasets: list, seeds: list, epochs: dict, settings: Settings) -> Race:
    """Replays the race over recorded `curves` of every template x dataset x seed; `epochs`: each template's
    schedule ({template: epochs})."""
    outcome, alive = Race(), list(templates)
    for fraction in settings.rungs:
        if len(alive) < 2:
            break
        reached = {t: rung_epoch(fraction, epochs[t]) for t in alive}
        compared = standings(curves, alive, datasets, seeds, reached, settings.seed)
        order = sorted(alive, key=lambda t: -compared.point(t, "average"))   # stable: ties keep the selection order
        # Halving's cut: the average of the last template that goes on; one equal to it is not cut. Nothing is cut
        # at a rung where the leader has not measurably learned (its interval reaches 0, as in a warm-up).
        cut = compared.point(order[math.ceil(len(alive) / settings.eta) - 1], "average") \
            if compared.interval(order[0], "average")[0] > 0 else -math.inf
        rows = []
        for template in alive:
            place = order.index(template)
            behind = None if place == 0 else compared.difference(order[0], template, "average")
            why = stop_reason(template, behind, compared.point(template, "average") < cut, reached[template],
                              epochs[template], settings)
            low, high = compared.interval(template, "average")
            rows.append(Standing(template, reached[template], compared.point(template, "average"), low, high,
                                 behind, why is not None, place, why))
            if why:
                outcome.stopped[template] = reached[template]
        outcome.rungs.append((fraction, rows))
        alive = [t for t in alive if t not in outcome.stopped]
    outcome.finishers = alive
    return outcome


def verdict(outcome: Race, template: str, epochs: int) -> dict:
    """What the race decided for `template` (of `epochs` epochs), as the stage after its rung reads it: for a
    template that goes on, only that (so that another template's numbers changing does not rerun its training);
    for a stopped one, pipelines.stopped's record: where, of how many epochs, behind whom and by how much, why
    (BEHIND or HALVING) and its place among the templates at that rung."""
    if template not in outcome.stopped:
        return {"template": template, "continues": True}
    fraction, rows = next((f, rows) for f, rows in outcome.rungs if any(r.template == template and r.stopped
                                                                        for r in rows))
    leader = next(r.template for r in rows if r.behind is None)
    row = next(r for r in rows if r.template == template)
    return {"template": template, "stopped_at_epoch": outcome.stopped[template], "of_epochs": epochs,
            "rung": fraction, "leader": leader, "behind": {k: round(float(v), 3) for k, v in row.behind.items()},
            "why": row.why, "place": row.place + 1, "of": len(rows)}
