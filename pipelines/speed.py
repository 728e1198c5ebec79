"""Inference speed: batch-1 latency (median after warm-up) and OpenVINO throughput with async requests."""

import os
import platform
import statistics
import time
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
