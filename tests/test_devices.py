"""GPU claiming between concurrent cells: real processes, fake GPUs (UUID strings), a lock folder per test."""

import select
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import devices, training

ROOT = Path(__file__).resolve().parents[1]
# One cell's claim: GPUs (comma-separated UUIDs) as this process sees them, its torchrun local rank or "-",
# cells per GPU, lock folder. Prints what it claimed, then holds it as a training would.
CLAIMER = """
import sys, time
from pathlib import Path
from pipelines import devices
gpus = sys.argv[1].split(",")
rank = None if sys.argv[2] == "-" else int(sys.argv[2])
index = devices.claim(gpus, rank, int(sys.argv[3]), Path(sys.argv[4]), log=lambda m: print(m, flush=True),
                      poll_seconds=0.1)
print("claimed", gpus[index], flush=True)
time.sleep(600)
"""


class Cell:
    """A process claiming a GPU; `line()` reads what it printed."""

    def __init__(self, gpus, locks, rank=None, per_gpu=1):
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, ",".join(gpus), "-" if rank is None else str(rank), str(per_gpu),
             str(locks)], cwd=ROOT, stdout=subprocess.PIPE, bufsize=0)

    def line(self, timeout=20.0) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "no output in time"
        return self.process.stdout.readline().decode().strip()

    def claimed(self, timeout=20.0) -> str:
        line = self.line(timeout)
        assert line.startswith("claimed "), line
        return line.split()[1]

    def silent_for(self, seconds: float) -> bool:
        return not select.select([self.process.stdout], [], [], seconds)[0]

    def kill(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def cells():
    started = []

    def start(*args, **kwargs):
        started.append(Cell(*args, **kwargs))
        return started[-1]
    yield start
    for cell in started:
        cell.kill()


GPUS = ["GPU-aaaa", "GPU-bbbb"]


def test_each_cell_claims_its_own_gpu_and_a_killed_cell_frees_it(cells, tmp_path):
    holders = [cells(GPUS, tmp_path) for _ in GPUS]
    claimed = {holder.claimed(): holder for holder in holders}
    assert sorted(claimed) == GPUS
    waiting = cells(GPUS, tmp_path)
    assert waiting.line() == f"all 2 GPUs in use by other cells (1 per GPU, locks in {tmp_path}): waiting for one to finish"
    assert waiting.silent_for(1.0)  # still waiting: no two cells share a GPU
    claimed["GPU-bbbb"].kill()  # SIGKILL: the kernel drops its lock
    assert waiting.line() == "GPU 1 is free now"
    assert waiting.claimed() == "GPU-bbbb"


def test_cells_see_one_gpu_by_its_uuid_whatever_cuda_visible_devices_says(cells, tmp_path):
    only_second = cells(["GPU-bbbb"], tmp_path)  # CUDA_VISIBLE_DEVICES=1: index 0 is the second GPU
    assert only_second.claimed() == "GPU-bbbb"
    assert cells(GPUS, tmp_path).claimed() == "GPU-aaaa"


def test_sharing_fills_every_gpu_once_before_any_twice(cells, tmp_path):
    claims = [cells(GPUS, tmp_path, per_gpu=2).claimed() for _ in range(4)]
    assert claims == ["GPU-aaaa", "GPU-bbbb", "GPU-aaaa", "GPU-bbbb"]
    assert "waiting" in cells(GPUS, tmp_path, per_gpu=2).line()


def test_a_torchrun_process_takes_the_gpu_it_was_given(cells, tmp_path):
    assert cells(GPUS, tmp_path, rank=1).claimed() == "GPU-bbbb"  # GPU 0 is free, but rank 1 was given GPU 1
    assert cells(GPUS, tmp_path).claimed() == "GPU-aaaa"
    late = cells(GPUS, tmp_path, rank=0)
    assert late.line().startswith("GPU 0 in use by other cells")


def test_no_gpu_claims_nothing(tmp_path):
    assert devices.claim([], locks=tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_cells_per_gpu_must_be_a_positive_whole_number(monkeypatch):
    monkeypatch.setenv("BENCH_CELLS_PER_GPU", "0")
    with pytest.raises(ValueError, match="BENCH_CELLS_PER_GPU must be a whole number >= 1, not '0'"):
        devices.cells_per_gpu()


def test_training_trains_on_the_gpu_it_claimed(cells, tmp_path, monkeypatch):
    """The training loop's device with two fake CUDA devices, the first held by another cell."""
    uuids = ["aaaa-1111", "bbbb-2222"]
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(uuids))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("Props", (), {"uuid": uuids[i]}))
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert cells(uuids, tmp_path).claimed() == "aaaa-1111"
    try:
        assert training._device() == torch.device("cuda", 1) and chosen == [1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["aaaa-1111.0.lock", "bbbb-2222.0.lock"]
    finally:
        devices.release()
