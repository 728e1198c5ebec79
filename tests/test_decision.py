"""The recommendation decided once: speed timed side by side decides only beyond its noise (a real CPU hog does not
flip it, a real 2x difference does), then compute, then the order in params; the deployment target's accuracy
decides, and where it ranks templates differently from PyTorch it says so."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines.comparison import Comparison, Measured
from pipelines.decision import choose, decide, ranking_changes
from pipelines.speed import CpuLoad, SideBySide, median_interval, side_by_side

GFLOPS = pd.Series({"a": 5.0, "b": 5.0})


def tied(templates=("a", "b"), datasets=("d",)) -> Comparison:
    """Templates whose results are identical: the data cannot tell them apart."""
    spread = np.linspace(-3, 3, 200)
    results = {(t, d): Measured(np.array([50.0, 52.0]), np.array([51.0 + spread, 51.0 + spread])) for t in templates
             for d in datasets}
    return Comparison(results, list(templates), list(datasets), seed=0)


def measured(rounds: dict, dataset: str = "d", runtime: str = "ir_fp32", share: float = 0.0) -> SideBySide:
    return SideBySide({"runtime": runtime, "datasets": {dataset: {
        "ms": {t: list(v) for t, v in rounds.items()}, "others_cpu_share": share, "inference_precision": ["f32"]}}})


def work(loops: int):
    """A fixed amount of single-threaded CPU work: a stand-in model whose cost is known exactly."""
    def run(_):
        total = 0
        for i in range(loops):
            total += i * i
        return total
    return run


def hogs():
    """Processes that keep every core busy: another user's job on the machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]


def timed_with_a_hog(loops: dict, hogged: str, rounds: int = 12) -> dict:
    """Side-by-side timing of `work` runners; the hog starts during the 3rd round's timing of `hogged` and stops
    during its 8th."""
    calls, started = {"n": 0}, []
    inputs = list(range(4))

    def disturbed(run):
        def wrapper(item):
            calls["n"] += 1
            if calls["n"] == 2 * len(inputs) + 1:
                started.extend(hogs())
            if calls["n"] == 7 * len(inputs) + 1:
                for process in started:
                    process.kill()
            return run(item)
        return wrapper

    runners = {t: [disturbed(work(n)) if t == hogged else work(n)] for t, n in loops.items()}
    try:
        with CpuLoad() as load:
            times = side_by_side(runners, inputs, rounds, warmup=1)
    finally:
        for process in started:
            process.kill()
            process.wait()
    assert len(started) == 2  # the hog did run during the timing
    return times, load


def test_a_cpu_hog_during_one_templates_timing_does_not_flip_the_choice():
    """Equal work, a real busy process started while `b` (first in run.templates) is being timed: side by side
    both pay for it, no ratio clears the margin, and the choice falls to compute, then the order."""
    times, load = timed_with_a_hog({"a": 300000, "b": 300000}, hogged="b")
    assert load.others_share > 0.05  # the machine was measurably busy
    choice = choose(tied(), "average", measured(times), GFLOPS, ["b", "a"])
    assert (choice.template, choice.decided_by, choice.slower) == ("b", "order", {})


def test_a_real_twofold_speed_difference_is_found_under_the_same_hog():
    times, _ = timed_with_a_hog({"a": 300000, "b": 600000}, hogged="a")
    choice = choose(tied(), "average", measured(times), GFLOPS, ["b", "a"])
    assert (choice.template, choice.decided_by) == ("a", "speed")
    other, found = choice.slower["b"]
    assert other == "a" and 1.5 < found.low <= found.point < 2.6


def test_borderline_speed_decides_nothing_and_says_so():
    rng = np.random.default_rng(0)
    a = 10 + rng.normal(0, 0.05, 10)
    b = a * np.linspace(1.04, 1.18, 10)  # ratios straddling 1.10
    choice = choose(tied(), "average", measured({"a": a, "b": b}), GFLOPS, ["b", "a"])
    assert (choice.template, choice.decided_by) == ("b", "order") and set(choice.borderline) == {"b"}


def test_compute_then_order_then_the_budget():
    equal = measured({"a": [10.0] * 10, "b": [10.0] * 10})
    assert choose(tied(), "d", equal, pd.Series({"a": 5.0, "b": 8.0}), ["b", "a"]).decided_by == "compute"
    assert choose(tied(), "d", equal, pd.Series({"a": 5.0, "b": 5.2}), ["b", "a"]).template == "b"  # within 5%
    slow_b = measured({"a": [10.0] * 10, "b": [30.0] * 10})
    budget = choose(tied(), "d", slow_b, GFLOPS, ["b", "a"], budget_ms=20)
    assert (budget.template, budget.decided_by, list(budget.over_budget)) == ("a", "budget", ["b"])
    assert choose(tied(), "d", None, GFLOPS, ["b", "a"]).decided_by == "order"  # speed not measured: no say


def test_a_clear_accuracy_lead_decides_before_speed():
    spread = np.linspace(-1, 1, 200)
    results = {("a", "d"): Measured(np.array([70.0, 71.0]), np.array([70 + spread, 71 + spread])),
             ("b", "d"): Measured(np.array([40.0, 41.0]), np.array([40 + spread, 41 + spread]))}
    compared = Comparison(results, ["a", "b"], ["d"], seed=0)
    choice = choose(compared, "average", measured({"a": [30.0] * 10, "b": [10.0] * 10}), GFLOPS, ["b", "a"])
    assert (choice.template, choice.decided_by) == ("a", "accuracy")


def test_the_target_decides_and_a_reversal_is_flagged():
    """b's INT8 IR loses 10 points: PyTorch ranks b first, the INT8 target a, beyond both noises."""
    spread = np.linspace(-1, 1, 200)

    def comparison(b_points):
        results = {("a", "d"): Measured(np.array([60.0, 61.0]), np.array([60 + spread, 61 + spread])),
                 ("b", "d"): Measured(np.array(b_points), np.array([b_points[0] + spread, b_points[1] + spread]))}
        return Comparison(results, ["a", "b"], ["d"], seed=0)

    pytorch, int8 = comparison([66.0, 67.0]), comparison([56.0, 57.0])
    made = decide(int8, pytorch, "ir_int8", measured({"a": [10.0] * 10, "b": [10.0] * 10}, runtime="ir_int8"),
                  GFLOPS, ["a", "b"])
    assert (made.template, made.overall.decided_by, made.pytorch_choice) == ("a", "accuracy", "b")
    changes = ranking_changes(pytorch, int8)
    assert set(changes["dataset"]) == {"d", "average"}
    row = changes.iloc[0]
    assert (row["A"], row["B"], row["distinguishable"]) == ("b", "a", True)
    assert row["pytorch"] == pytest.approx(6.0) and row["target"] == pytest.approx(-4.0)


def test_speed_timed_at_another_precision_does_not_decide():
    made = decide(tied(), tied(), "ir_int8", measured({"a": [10.0] * 10, "b": [30.0] * 10}), GFLOPS, ["b", "a"])
    assert made.speeds is None and made.template == "b" and made.overall.decided_by == "order"


def test_median_interval_covers_the_median_by_order_statistics():
    assert median_interval(range(10)) == (4.5, 1.0, 8.0)  # P(Binomial(10, 1/2) <= 1) = 1.1% per side
    assert np.isnan(median_interval(range(5))[1])  # 5 rounds are too few for a 95% interval
