"""Which GPU a training uses when several run on one machine at once (`dvc queue start -j N`, or cells
started by hand): each claims a free GPU by locking a file named after the GPU's UUID.

The lock is an `flock`, so the kernel releases it when the process ends in any way, SIGKILL included: a
killed cell never leaves its GPU claimed. UUIDs, not CUDA indices, name the files, so processes that see
different `CUDA_VISIBLE_DEVICES` still agree on which physical GPU is taken.

Environment (a machine's business, not the benchmark's: nothing here enters a DVC stage's key):
  BENCH_CELLS_PER_GPU   how many cells may share one GPU (default 1: none share)
  BENCH_GPU_LOCKS       folder of the lock files (default: <temp dir>/isbench-gpu-locks, one per machine)
"""

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path

# The claim is held for the life of the process: closing the file would release it.
_held = []


def lock_dir() -> Path:
    return Path(os.environ.get("BENCH_GPU_LOCKS") or Path(tempfile.gettempdir()) / "isbench-gpu-locks")


def cells_per_gpu() -> int:
    value = os.environ.get("BENCH_CELLS_PER_GPU", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"BENCH_CELLS_PER_GPU must be a whole number >= 1, not {value!r}")
    return int(value)


def _try_lock(path: Path):
    """An open file holding an exclusive lock on `path`, or None when another process holds it."""
    # Read-only: a lock file another user created is still lockable.
    handle = open(os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim(gpus: list, local_rank=None, per_gpu: int = 1, locks: Path = None, log=print,
          poll_seconds: float = 2.0):
    """Claims one of `gpus` (their UUIDs, in CUDA index order) for this process and returns its index.

    Under torchrun (`local_rank` given) the process takes the GPU torchrun gave it, waiting if another cell
    holds it. Otherwise it takes the first GPU with a free slot (`per_gpu` slots each; every GPU's first slot
    before any second), waiting until one frees when all are taken. None when there is no GPU.
    """
    if not gpus:
        return None
    locks = locks or lock_dir()
    if not locks.is_dir():
        locks.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # other users' cells on this machine lock here too
            os.chmod(locks, 0o1777)
    candidates = [local_rank] if local_rank is not None else range(len(gpus))
    slots = [(slot, index) for slot in range(per_gpu) for index in candidates]
    waited = False
    while True:
        for slot, index in slots:
            handle = _try_lock(locks / f"{gpus[index]}.{slot}.lock")
            if handle:
                _held.append(handle)
                if waited:
                    log(f"GPU {index} is free now")
                return index
        if not waited:
            which = f"GPU {local_rank}" if local_rank is not None else f"all {len(gpus)} GPUs"
            log(f"{which} in use by other cells ({per_gpu} per GPU, locks in {locks}): waiting for one to finish")
            waited = True
        time.sleep(poll_seconds)


def release() -> None:
    """Gives back what this process claimed (a process that ends releases its claims anyway)."""
    while _held:
        _held.pop().close()
