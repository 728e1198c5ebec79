"""Inference speed: batch-1 latency (median after warm-up), OpenVINO throughput with async requests, and the
side-by-side timing that decisions use (templates interleaved in rounds, ratios with intervals, the machine's
load while timing)."""

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def latency(predict, batch: np.ndarray, warmup: int, repeats: int) -> float:
    """Median seconds of `predict(batch)` over `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        predict(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def openvino_throughput(xml_path, batch: np.ndarray, seconds: float, precision: str = "f32") -> float:
    """Images per second with OpenVINO's throughput hint and as many async requests as it asks for."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml_path), "CPU",
                                  {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision})
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    for _ in range(len(queue)):  # warm-up
        queue.start_async({0: batch})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: batch})
        done += 1
    queue.wait_all()
    return done / (time.perf_counter() - start)


def machine() -> dict:
    """What the timings were measured on: CPU model and core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "cpu_cores": os.cpu_count()}


# Side by side: the templates a decision compares are timed together, in rounds that interleave them inference
# by inference (the order rotating each round), so that whatever else loads the machine falls on all of them
# alike. A round's time of a template is its mean over the images and seed models; ratios come from rounds.


@dataclass(frozen=True)
class Ratio:
    """How many times longer B takes than A: the median over rounds of B's time over A's in the same round, and
    its distribution-free 95% interval (order statistics of the rounds, robust to a few disturbed rounds)."""
    point: float
    low: float
    high: float


def median_interval(values) -> tuple:
    """(median, low, high): the median of `values` and the order-statistic interval that covers it with at least
    95% (binomial); NaN bounds with fewer than 6 values, too few for one."""
    values = np.sort(np.asarray(values, float))
    n = len(values)
    if n == 0:
        return np.nan, np.nan, np.nan
    below = [k for k in range(n // 2 + 1) if sum(math.comb(n, i) for i in range(k)) / 2 ** n <= 0.025]
    k = max(below) if below else 0
    if k == 0:
        return float(np.median(values)), np.nan, np.nan
    return float(np.median(values)), float(values[k - 1]), float(values[n - k])


def ratio(a, b) -> Ratio:
    """B's time over A's, round by round (`a`, `b`: per-round times, or per-round geometric means)."""
    return Ratio(*median_interval(np.asarray(b, float) / np.asarray(a, float)))


class CpuLoad:
    """The share of the machine's CPU time that other processes used while this one measured (from /proc/stat,
    less this process's own CPU time), and the load average at the end. A context manager."""

    def __enter__(self):
        self.start = (_busy_seconds(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = (now - then for now, then in zip((_busy_seconds(), time.process_time(),
                                                            time.perf_counter()), self.start))
        cores = os.cpu_count() or 1
        self.others_share = None if busy is None else round(max(0.0, (busy - own) / (wall * cores)), 3)
        self.load_average = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        return False

    def to_dict(self) -> dict:
        return {"others_cpu_share": self.others_share, "load_average": self.load_average}


def _busy_seconds():
    """Seconds every CPU of the machine spent busy since boot (None where /proc/stat does not exist)."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def side_by_side(runners: dict, inputs: list, rounds: int, warmup: int) -> dict:
    """template -> `[rounds]` mean milliseconds per inference. `runners`: template -> callables (one per seed
    model), each taking one item of `inputs`. Each round runs every input through every runner of every template,
    interleaved inference by inference; the templates' order rotates from round to round."""
    templates = list(runners)
    for _ in range(warmup):
        for item in inputs:
            for template in templates:
                for run in runners[template]:
                    run(item)
    times = {t: np.zeros(rounds) for t in templates}
    for r in range(rounds):
        order = templates[r % len(templates):] + templates[:r % len(templates)]
        for item in inputs:
            for template in order:
                for run in runners[template]:
                    start = time.perf_counter()
                    run(item)
                    times[template][r] += time.perf_counter() - start
    count = len(inputs)
    return {t: 1000 * times[t] / (count * len(runners[t])) for t in templates}


class SideBySide:
    """What the speed stage measured (its json): per dataset, each template's time per image in each round."""

    def __init__(self, measured: dict):
        self.runtime = measured["runtime"]
        self.datasets = measured["datasets"]
        self.rounds = {d: {t: np.asarray(v, float) for t, v in found["ms"].items()} for d, found in
                       self.datasets.items()}

    def times(self, template: str, column: str):
        """`[rounds]` ms per image on `column` (a dataset, or "average": the geometric mean over datasets, round by
        round); None where the template was not timed there."""
        if column != "average":
            return self.rounds.get(column, {}).get(template)
        found = [r.get(template) for r in self.rounds.values()]
        if not found or any(f is None for f in found) or len({len(f) for f in found}) > 1:
            return None
        return np.exp(np.mean(np.log(found), axis=0))

    def ratio(self, a: str, b: str, column: str) -> Ratio | None:
        """B's time over A's on `column`, None where either was not timed."""
        first, second = self.times(a, column), self.times(b, column)
        return None if first is None or second is None else ratio(first, second)

    def latency(self, template: str, column: str) -> tuple:
        """(median, low, high) ms per image over rounds; NaNs where not timed."""
        found = self.times(template, column)
        return (np.nan,) * 3 if found is None else median_interval(found)

    def busy(self, threshold: float = 0.1) -> dict:
        """dataset -> the share of the machine's CPU that other processes used while it was timed, where above
        `threshold`."""
        return {d: found["others_cpu_share"] for d, found in self.datasets.items()
                if (found.get("others_cpu_share") or 0) > threshold}

    def computed_in(self) -> set:
        return {p for found in self.datasets.values() for p in found.get("inference_precision", [])}
