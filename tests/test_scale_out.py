"""One benchmark computed by several machines, on one box: clones of one git repository are the machines and a
local folder is their shared DVC remote (README, "Spreading the benchmark"). Each worker computes its own
template's cells and pushes them with DVC's run-cache, one as the README's experiment, one as a task of the
Slurm job array (cluster/slurm.sbatch, run by bash with Slurm's variables set); a gathering clone restores
all of them from the run-cache and computes only the report. A worker killed mid-way reruns only the stages
it had not finished."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.repos import ROOT, cell_stages, environment, project_repo, ran_stages, restored_stages, run, selection

DATASET, TEMPLATES = "wgisd_1", ["tiny", "mmdet_r18"]
CELL_STAGES = cell_stages(TEMPLATES, [DATASET], ["fp32"])


def one_dataset_one_epoch(params):
    params["demo"].update(cityscapes={"train": 4, "val": 2}, pets={"trainval": 4, "test": 2},
                          wgisd={"train": 12, "test": 6})
    for template in TEMPLATES:
        params["templates"][template].update(epochs=1, input_size=96, warmup_iters=2)
    params["run"].update(templates=selection(*TEMPLATES), seeds=[0])
    params["datasets"] = {DATASET: params["datasets"][DATASET]}
    params["export"].update(precisions=["fp32"], calibration_images=2)
    params["speed"].update(warmup=1, repeats=2, throughput_seconds=0.3)


def machine(origin: Path, name: str) -> Path:
    """A clone of the benchmark's git repository, with a DVC cache of its own, as on another machine."""
    run(["git", "clone", "-q", str(origin), name], origin.parent)
    return origin.parent / name


def dvc_lock_stages(repo: Path) -> set:
    """The stages dvc.lock records as finished (DVC writes it after each stage); {} while it is being written."""
    try:
        return set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    except (FileNotFoundError, yaml.YAMLError, TypeError, KeyError):
        return set()


def killed_after(args: list, cwd: Path, env: dict, repo: Path, stage: str, limit_s: float = 600):
    """Runs `args` and SIGKILLs it and all it started as soon as `repo`'s dvc.lock records `stage`; returns the
    stages finished by then and what it printed."""
    log = cwd / "killed.log"
    with open(log, "w") as out:
        process = subprocess.Popen(args, cwd=cwd, env=environment(**env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    start = time.monotonic()
    while stage not in dvc_lock_stages(repo):
        assert process.poll() is None, f"{args} ended before {stage} finished"
        assert time.monotonic() - start < limit_s, f"{stage} not finished in {limit_s} s"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    while time.monotonic() - start < limit_s:  # until the kernel has removed every process of the group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    return dvc_lock_stages(repo), log.read_text()


@pytest.mark.slow
def test_two_machines_share_one_benchmark_through_the_run_cache(tmp_path):
    origin = project_repo(tmp_path / "origin", one_dataset_one_epoch)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "shared-remote")], origin)
    run(["git", "commit", "-qam", "the shared DVC remote"], origin)

    # Machine A: the README's experiment form of a shard, one template.
    a = machine(origin, "machine-a")
    first = run(["dvc", "exp", "run", "-S", "run.templates.mmdet=[]"], a)
    assert {s for s in ran_stages(first.stdout) if "@" in s and not s.startswith("prepare")} == \
        cell_stages(["tiny"], [DATASET], ["fp32"]), first.stdout[-3000:]
    run(["dvc", "push", "--run-cache"], a)

    # Machine B: array task 1 of the Slurm job, killed once its training is finished, then run again (requeued).
    task = ["bash", str(ROOT / "cluster" / "slurm.sbatch"), *TEMPLATES]
    slurm = dict(SLURM_ARRAY_TASK_ID="1", SLURM_SUBMIT_DIR=str(origin), SHARD_ROOT=str(tmp_path / "machine-b"),
                 BENCH_VENV=sys.prefix)
    b = tmp_path / "machine-b" / "mmdet_r18"
    finished, killed = killed_after(task, tmp_path, slurm, b, f"train_mmdet@mmdet_r18-{DATASET}-0")
    # The data stages A pushed were restored on B, not recomputed: their keys do not depend on the templates run.
    assert restored_stages(killed) == {"demo_data", f"prepare@{DATASET}"}, killed[-3000:]
    remaining = cell_stages(["mmdet_r18"], [DATASET], ["fp32"]) - finished
    assert remaining, "killed too late: nothing was left to rerun"
    rerun = run(task, tmp_path, **slurm)
    # A stage whose command had finished when the kill came is restored from the run-cache, not rerun.
    assert ran_stages(rerun.stdout) | restored_stages(rerun.stdout) == remaining, rerun.stdout[-3000:]
    assert ran_stages(rerun.stdout) and not ran_stages(rerun.stdout) & finished

    # The gathering machine: every cell is restored from the run-cache; only the report is computed.
    gather = machine(origin, "gather")
    gathered = run(["dvc", "repro", "--pull"], gather)
    assert ran_stages(gathered.stdout) == {"report"}, gathered.stdout[-3000:]
    assert CELL_STAGES | {"demo_data", f"prepare@{DATASET}"} <= restored_stages(gathered.stdout)
    table = pd.read_csv(gather / "reports" / "benchmark.csv")
    assert sorted(table["template"]) == sorted(TEMPLATES) and set(table["dataset"]) == {DATASET}
    for template, worker in (("tiny", a), ("mmdet_r18", b)):
        cell = f"metrics/{template}-{DATASET}-seed0"
        for name in ("pytorch.json", "ir_fp32.json", "train.json"):
            assert (gather / cell / name).read_bytes() == (worker / cell / name).read_bytes(), (cell, name)
        row = table[table["template"] == template].iloc[0]
        assert row.segm_map == pytest.approx(json.loads((worker / cell / "pytorch.json").read_text())["segm_map"])
    assert "Data and pipelines are up to date." in run(["dvc", "status"], gather).stdout
