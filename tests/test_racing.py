"""The racing policy (pipelines.racing) and its replay over a finished grid (benchmarks/racing.py), on grids
written here whose outcome is known: a template clearly behind from the first epoch, two that the validation
images cannot tell apart, and a late starter that overtakes."""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import racing as replay
from pipelines import cells
from pipelines.cells import Cell
from pipelines.racing import Epoch, Settings, kept_by, race, rung_epoch, verdict

DATASETS = ["cityscapes", "wgisd_1"]
SEEDS = [0, 1]
EPOCHS = 12
RESAMPLES = 200


def image_noise(dataset: str, rows: int = RESAMPLES) -> np.ndarray:
    """What one dataset's resamples do to every cell's mAP alike (the replicates are paired over images)."""
    return np.random.default_rng(zlib.crc32(dataset.encode())).normal(0, 1.5, rows)


def curve_of(final: float, start: float, template: str, dataset: str, seed: int) -> list:
    """A learning curve from `start` to `final` over EPOCHS with a training's own wobble, and replicates that
    share the dataset's image noise and add the model's own."""
    rng = np.random.default_rng(zlib.crc32(f"{template} {dataset} {seed}".encode()))
    wobble, curve = rng.normal(0, 1.0, EPOCHS), []
    for e in range(1, EPOCHS + 1):
        point = start + (final - start) * (1 - np.exp(-3 * e / EPOCHS)) / (1 - np.exp(-3)) + wobble[e - 1]
        curve.append(Epoch(e, float(point), point + image_noise(dataset) + rng.normal(0, 1.0, RESAMPLES), 2.0))
    return curve


def curves_for(shapes: dict) -> dict:
    """{template: (start, final)} -> recorded curves of every dataset and seed."""
    return {(t, d, s): curve_of(final, start, t, d, s) for t, (start, final) in shapes.items()
            for d in DATASETS for s in SEEDS}


EPOCH_COUNTS = {t: EPOCHS for t in ("leader", "close", "third", "behind", "late")}


def test_rung_epoch_is_a_share_of_each_templates_own_schedule():
    assert [rung_epoch(f, 12) for f in (0.08, 0.25, 0.5)] == [1, 3, 6]
    assert rung_epoch(0.25, 4) == 1 and rung_epoch(0.01, 100) == 1 and rung_epoch(0.5, 5) == 3


def test_a_rung_counts_the_best_epoch_so_far_the_first_of_equals():
    curve = [Epoch(e, m, np.zeros(1), 1.0) for e, m in enumerate([5.0, 9.0, 9.0, 3.0], start=1)]
    assert kept_by(curve, 1).epoch == 1 and kept_by(curve, 4).epoch == 2


def test_the_template_behind_beyond_both_noises_stops_at_the_first_rung_and_ties_go_on():
    curves = curves_for({"leader": (30, 60), "close": (29, 59.5), "behind": (5, 20)})
    outcome = race(curves, ["leader", "close", "behind"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.08, 0.25, 0.5)))
    assert outcome.stopped == {"behind": 1} and outcome.finishers == ["leader", "close"]
    fraction, standings = outcome.rungs[0]
    behind = next(s for s in standings if s.template == "behind")
    assert fraction == 0.08 and behind.stopped and behind.behind["low"] > 0 and behind.epoch == 1
    assert all(len(rows) == 2 for _, rows in outcome.rungs[1:])  # the stopped one is not compared again
    assert outcome.epochs_spent("behind", EPOCHS) == 1 and outcome.epochs_spent("leader", EPOCHS) == EPOCHS


def test_kept_templates_and_a_margin_keep_it_running():
    curves = curves_for({"leader": (30, 60), "behind": (5, 20)})
    kept = race(curves, ["leader", "behind"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.25,), keep=("behind",)))
    wide = race(curves, ["leader", "behind"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.25,), margin=50.0))
    assert kept.stopped == {} == wide.stopped


def test_a_template_whose_whole_schedule_is_in_the_rung_finishes():
    curves = curves_for({"leader": (30, 60), "behind": (5, 20)})
    short = {"leader": EPOCHS, "behind": 1}  # its one epoch is within the rung: nothing is left to save
    outcome = race(curves, ["leader", "behind"], DATASETS, SEEDS, short, Settings((0.25,)))
    assert outcome.stopped == {} and outcome.rungs[0][1][1].behind["low"] > 0


def test_the_verdict_of_a_template_that_goes_on_holds_nothing_the_others_measured():
    curves = curves_for({"leader": (30, 60), "close": (29, 59.5), "behind": (5, 20)})
    outcome = race(curves, ["leader", "close", "behind"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.5,)))
    assert verdict(outcome, "close", EPOCHS) == {"template": "close", "continues": True}
    stopped = verdict(outcome, "behind", EPOCHS)
    assert stopped["stopped_at_epoch"] == 6 and stopped["of_epochs"] == EPOCHS and stopped["leader"] == "leader"
    assert stopped["rung"] == 0.5 and stopped["behind"]["low"] > 0 and set(stopped["behind"]) == {
        "difference", "low", "high", "p_better"}
    assert json.loads(json.dumps(stopped)) == stopped  # what stages/race.py writes


def test_halving_stops_the_tied_beyond_the_best_ceil_n_over_eta_and_says_so():
    curves = curves_for({"leader": (30, 60), "close": (29, 59.5), "third": (29.5, 60), "behind": (5, 20)})
    four = ["leader", "close", "third", "behind"]
    statistical = race(curves, four, DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.08, 0.25)))
    halved = race(curves, four, DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.08, 0.25), eta=2))
    assert statistical.stopped == {"behind": 1}   # eta 1: the tied ones go on
    first = {r.template: r for r in halved.rungs[0][1]}
    assert first["behind"].why == "behind"        # beyond the noise, whatever its place
    kept = {t for t, r in first.items() if not r.stopped}
    assert len(kept) == 2 and first[min(kept, key=lambda t: first[t].place)].place == 0   # ceil(4 / 2) go on
    (dropped,) = set(four) - kept - {"behind"}
    assert first[dropped].why == "halving" and first[dropped].place == 2 and not first[dropped].behind["low"] > 0
    assert len(halved.finishers) == 1 and len(halved.rungs[1][1]) == 2   # ceil(2 / 2) after the second rung
    record = verdict(halved, dropped, EPOCHS)
    assert record["why"] == "halving" and (record["place"], record["of"]) == (3, 4)


def test_halving_spares_kept_templates_and_a_schedule_within_the_rung():
    curves = curves_for({"leader": (30, 60), "close": (29, 59.5), "third": (29.5, 60)})
    three = ["leader", "close", "third"]
    outcome = race(curves, three, DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.25,), keep=("third",), eta=3))
    assert set(outcome.finishers) >= {"third"} and len(outcome.stopped) == 1
    short = race(curves, three, DATASETS, SEEDS, {"leader": EPOCHS, "close": 1, "third": 1}, Settings((0.25,), eta=3))
    assert short.stopped == {}


def test_halving_cuts_nothing_where_the_templates_are_equal_as_in_a_warm_up():
    flat = [Epoch(e, 0.0, np.zeros(RESAMPLES), 1.0) for e in range(1, EPOCHS + 1)]
    curves = {(t, d, s): flat for t in ("leader", "close", "third") for d in DATASETS for s in SEEDS}
    outcome = race(curves, ["leader", "close", "third"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.25,), eta=3))
    assert outcome.stopped == {} and len(outcome.finishers) == 3
    # Nor where the leader is above the others by a little but has not measurably learned: its interval reaches 0.
    barely = {**curves, **{("leader", d, s): [Epoch(e, 0.2 * (s == 0), np.linspace(0, 0.4 * (s == 0), RESAMPLES), 1.0)
                                              for e in range(1, EPOCHS + 1)] for d in DATASETS for s in SEEDS}}
    outcome = race(barely, ["leader", "close", "third"], DATASETS, SEEDS, EPOCH_COUNTS, Settings((0.25,), eta=3))
    assert outcome.rungs[0][1][0].average > 0 and outcome.rungs[0][1][0].low <= 0 and outcome.stopped == {}


def test_with_one_seed_only_the_validation_images_separate():
    curves = curves_for({"leader": (30, 60), "behind": (5, 20)})
    outcome = race(curves, ["leader", "behind"], DATASETS, [0], EPOCH_COUNTS, Settings((0.25,)))
    assert outcome.stopped == {"behind": 3}


def write_grid(root: Path, shapes: dict, test_finals: dict) -> Path:
    """A finished benchmark's metrics folder: validation records, recipes, PyTorch test numbers."""
    curves = curves_for(shapes)
    for (template, dataset, seed), curve in curves.items():
        folder = Cell(template, dataset, seed).metrics_dir(root)
        (folder / cells.LIVE_FOLDER).mkdir(parents=True)
        record = {"resamples": RESAMPLES, "seed": 0, "epochs": [
            {"epoch": e.epoch, "segm_map": e.segm_map, "seconds": e.seconds, "replicates": e.replicates.tolist()}
            for e in curve]}
        (folder / cells.VALIDATION_FILE).write_text(json.dumps(record))
        (folder / cells.RECIPE_FILE).write_text(yaml.safe_dump({"epochs": EPOCHS}))
        point = test_finals[template] + 0.3 * seed
        cell = Cell(template, dataset, seed)
        cell.results(cells.PYTORCH, root).write_text(json.dumps({"segm_map": point}))
        replicates = point + image_noise(dataset + "test")
        cell.replicates(cells.PYTORCH, root).write_text(json.dumps({"segm_map": replicates.tolist()}))
    return root


def test_the_replay_reads_a_metrics_folder_and_scores_every_case(tmp_path):
    shapes = {"leader": (30, 60), "close": (29, 59.5), "behind": (5, 20)}
    root = write_grid(tmp_path / "metrics", shapes, {"leader": 60, "close": 59.5, "behind": 20})
    grid = replay.read_grid(root)
    assert grid.templates == ["behind", "close", "leader"] and grid.datasets == DATASETS and grid.seeds == SEEDS
    chosen = replay.cases(grid, 3, 2, 0, 0)
    assert len(chosen) == 3  # the three templates on {cityscapes}, {wgisd_1} and both, with both seeds
    found = replay.summary(grid, chosen, Settings((0.08, 0.25, 0.5)))
    assert found["agreeing"] == 1.0 and found["stops"]["behind"] == (3, 3) and found["stops"]["leader"] == (0, 3)
    # Two templates trained 12 epochs, the third 1: 25 of 36.
    assert found["epochs"] == pytest.approx(25 / 36) and found["seconds"] == pytest.approx(25 / 36)
    assert found["worst"].regret == 0.0


def test_a_late_starter_stopped_too_early_shows_as_regret(tmp_path):
    """The replay can fail the policy: a template behind at its first epoch that ends best, stopped there."""
    shapes = {"leader": (30, 50), "close": (29, 49.5), "late": (5, 70)}
    root = write_grid(tmp_path / "metrics", shapes, {"leader": 50, "close": 49.5, "late": 70})
    grid = replay.read_grid(root)
    found = replay.summary(grid, replay.cases(grid, 3, 2, 0, 0), Settings((0.08,)))
    assert found["stops"]["late"] == (3, 3) and found["agreeing"] == 0.0
    assert found["worst"].full == "late" and found["worst"].regret == pytest.approx(20.0, abs=0.5)
    later = replay.summary(grid, replay.cases(grid, 3, 2, 0, 0), Settings((0.5,)))
    assert later["stops"]["late"] == (0, 3) and later["agreeing"] == 1.0


def test_the_replay_prints_its_table(tmp_path, capsys):
    root = write_grid(tmp_path / "metrics", {"leader": (30, 60), "close": (29, 59.5), "behind": (5, 20)},
                      {"leader": 60, "close": 59.5, "behind": 20})
    replay.main(["--metrics", str(root), "--margins", "0", "2", "--etas", "1", "3"])
    out = capsys.readouterr().out
    assert "3 cases" in out and out.count("stopped: behind in 3 of 3 cases") == 4
    rows = [line for line in out.splitlines() if line.startswith(("   0.0 |", "   2.0 |"))]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "3", "1", "3"]
    with_halving = [line for line in out.splitlines() if "stopped:" in line][1]
    assert "close in 3 of 3 cases" in with_halving   # eta 3: one of three goes on; close is tied, and second


def test_the_floor_keeps_one_template_after_the_first_epoch_that_tells_them_apart(tmp_path):
    warm = {(t, d, s): [Epoch(e, 0.0 if e <= 2 else float(e + i), np.zeros(RESAMPLES), 1.0) for e in range(1, 13)]
            for i, t in enumerate(["a", "b", "c"]) for d in DATASETS for s in SEEDS}
    grid = replay.Grid(["a", "b", "c"], DATASETS, SEEDS, {"a": 12, "b": 12, "c": 12}, warm, {})
    case = replay.Case(("a", "b", "c"), tuple(DATASETS), tuple(SEEDS))
    assert replay.floor(grid, case) == (3, (3 * 3 + 9) * 4, 36 * 4)   # 50%: three to epoch 3, one on to 12
    flat = {k: [Epoch(e.epoch, 0.0, e.replicates, 1.0) for e in v] for k, v in warm.items()}
    assert replay.floor(replay.Grid(["a", "b", "c"], DATASETS, SEEDS, grid.epochs, flat, {}), case) == (
        None, 144, 144)


def test_a_folder_without_validation_records_is_named(tmp_path):
    with pytest.raises(SystemExit, match="no <template>-<dataset>-seed<n>/validation.json"):
        replay.read_grid(tmp_path)
