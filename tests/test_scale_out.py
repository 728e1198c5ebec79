"""One benchmark computed by several machines, on one box: clones of one git repository are the machines
(docs/scale-out.md). Each worker computes its own template's cells and pushes them with DVC's run-cache; a
gathering clone restores all of them from the run-cache and computes only the report; a worker stopped mid-way
reruns only the stages it had not finished. Two forms:
- the fast one, for any machine: a local folder is the shared remote, one worker is the README's experiment
  and one a task of cluster/slurm.sbatch run by bash with Slurm's variables set, SIGKILLed and run again;
- the real one: cluster/slurm.sbatch submitted with sbatch as a job array to a Slurm cluster on this machine
  (tests/cluster.py), one task requeued mid-way, the raw data and every result passing through an SSH remote,
  nothing else shared."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines import cells
from tests import cluster
from tests.repos import (ROOT, cell_stages, environment, project_repo, race_stages, ran_stages, restored_stages, run,
                         selection)

DATASET, TEMPLATES = "wgisd_1", ["tiny", "mmdet_r18"]
CELL_STAGES = cell_stages(TEMPLATES, [DATASET], ["fp32"])


def one_dataset_one_epoch(params):
    params["demo"].update(cityscapes={"train": 4, "val": 2}, cityscapes_small={"train": 1, "val": 1},
                          pets={"trainval": 4, "test": 2}, wgisd={"train": 12, "test": 6})
    for template in TEMPLATES:
        params["templates"][template].update(epochs=1, input_size=96, warmup_iters=2)
    params["run"].update(templates=selection(*TEMPLATES), datasets=[DATASET], seeds=[0])
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
        cell_stages(["tiny"], [DATASET], ["fp32"]) | race_stages(["tiny"]), first.stdout[-3000:]
    run(["dvc", "push", "--run-cache"], a)

    # Machine B: array task 1 of the Slurm job, killed once its training is finished, then run again (requeued).
    task = ["bash", str(ROOT / "cluster" / "slurm.sbatch"), *TEMPLATES]
    slurm = dict(SLURM_ARRAY_TASK_ID="1", SLURM_SUBMIT_DIR=str(origin), SHARD_ROOT=str(tmp_path / "machine-b"),
                 BENCH_VENV=sys.prefix)
    b = tmp_path / "machine-b" / "mmdet_r18"
    finished, killed = killed_after(task, tmp_path, slurm, b, f"train_mmdet@mmdet_r18-{DATASET}-0")
    # The data stages A pushed were restored on B, not recomputed: their keys do not depend on the templates run;
    # so was tiny's rung leg, which mmdet_r18's verdict reads.
    assert restored_stages(killed) == {"demo_data", f"prepare@{DATASET}", f"rung_torchvision@tiny-{DATASET}-0"}, \
        killed[-3000:]
    remaining = cell_stages(["mmdet_r18"], [DATASET], ["fp32"]) - finished
    assert remaining, "killed too late: nothing was left to rerun"
    (b / ".dvc" / "tmp" / "rwlock").write_text("")  # as a kill while DVC rewrites its lock file leaves it
    rerun = run(task, tmp_path, **slurm)
    assert "removing .dvc/tmp/rwlock: a cancelled run left it torn" in rerun.stdout, rerun.stdout[-3000:]
    # A stage whose command had finished when the kill came is restored from the run-cache, not rerun.
    assert ran_stages(rerun.stdout) | restored_stages(rerun.stdout) == remaining, rerun.stdout[-3000:]
    assert ran_stages(rerun.stdout) and not ran_stages(rerun.stdout) & finished

    # The gathering machine: every cell is restored from the run-cache; only the side-by-side timing (on one
    # machine, where the templates meet), the report and tiny's verdict among both templates (A raced tiny alone:
    # the same verdict, so its cells stay restored) are computed.
    gather = machine(origin, "gather")
    gathered = run(["dvc", "repro", "--pull"], gather)
    assert ran_stages(gathered.stdout) == {"speed", "report"} | race_stages(["tiny"]), gathered.stdout[-3000:]
    assert CELL_STAGES | {"demo_data", f"prepare@{DATASET}"} <= restored_stages(gathered.stdout)
    table = pd.read_csv(gather / "reports" / "benchmark.csv")
    table = table[table["runtime"] == cells.PYTORCH]  # one row per cell and runtime
    assert sorted(table["template"]) == sorted(TEMPLATES) and set(table["dataset"]) == {DATASET}
    for template, worker in (("tiny", a), ("mmdet_r18", b)):
        cell = f"metrics/{template}-{DATASET}-seed0"
        for name in ("pytorch.json", "ir_fp32.json", cells.TRAINING_FILE):
            assert (gather / cell / name).read_bytes() == (worker / cell / name).read_bytes(), (cell, name)
        row = table[table["template"] == template].iloc[0]
        assert row.segm_map == pytest.approx(json.loads((worker / cell / "pytorch.json").read_text())["segm_map"])
    assert "Data and pipelines are up to date." in run(["dvc", "status"], gather).stdout


def slurm(args: list, env: dict, cwd=None) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed: {done.stderr}"
    return done.stdout


def wait_for_jobs(job: str, env: dict, limit_s: float = 1200) -> None:
    start = time.monotonic()
    while slurm(["squeue", "-h", "-j", job, "-o", "%i %T"], env).strip():
        assert time.monotonic() - start < limit_s, slurm(["squeue", "-j", job], env)
        time.sleep(2)


def requeue(task: str, env: dict) -> None:
    """Cancels a running array task and puts it back in the queue, as a preempted or failed node's task is. Slurm
    starts it again once the cancelled run's credential has expired (cred_expire: 10 s on the test's cluster)."""
    slurm(["scontrol", "requeue", task], env)
    start = time.monotonic()
    while "PENDING" not in slurm(["squeue", "-h", "-j", task, "-o", "%T"], env):
        assert time.monotonic() - start < 120, slurm(["squeue", "-j", task], env)
        time.sleep(0.5)


def submit(origin: Path, env: dict, log: Path) -> str:
    """sbatch of cluster/slurm.sbatch as one array task per template; returns the job id. The script asks for a
    GPU, 8 cores and 64 GB per task; this node has 2 cores and no GPU."""
    return slurm(["sbatch", "--parsable", f"--array=0-{len(TEMPLATES) - 1}", "--gres=none", "--cpus-per-task=1",
                  "--mem=4G", "--open-mode=append", f"--output={log}", "cluster/slurm.sbatch", *TEMPLATES], env,
                 cwd=origin).strip()


def finished_task_logs(folder: Path) -> list:
    """The array tasks' logs, each checked to say its shard is done and that its stages ran as forks of the
    preload server (pipelines/preload.py), none by itself."""
    logs = [(folder / f"task-{i}.log").read_text() for i in range(len(TEMPLATES))]
    for template, log in zip(TEMPLATES, logs):
        assert f"shard {template} done" in log, log[-3000:]
        assert " imported in " in log and "preload: runs by itself" not in log, log[-3000:]
    return logs


@pytest.mark.slow
def test_a_slurm_job_array_computes_the_benchmark_through_an_ssh_remote(tmp_path):
    """docs/scale-out.md's workflow with nothing shared but the git repository and an SSH remote: the raw data
    is DVC-tracked and pushed, sbatch runs one array task per template under slurmd, one task is cancelled and
    requeued after its training and resumes without redoing it, and the gathering clone pulls every cell."""
    def raw_data(params):
        one_dataset_one_epoch(params)
        params["data_dir"] = "data/raw"
    with cluster.slurm_cluster(tmp_path / "slurm") as slurm_env, cluster.ssh_server(tmp_path / "sshd") as (server, key):
        home = tmp_path / "home"  # the users' home on every machine: their SSH key where ssh looks for it
        (home / ".ssh").mkdir(parents=True)
        shutil.copy(key, home / ".ssh" / "id_ed25519")
        users = dict(HOME=str(home))
        origin = project_repo(tmp_path / "origin", raw_data)
        # The demo data placed where real data goes and put under DVC with the README's command.
        run([sys.executable, "-m", "stages.demo_data", "--out", "data/raw"], origin)
        run(["make", "track"], origin)
        run(["dvc", "remote", "add", "-d", "shared", f"{server}{tmp_path}/ssh-remote"], origin)
        run(["git", "add", "-A"], origin)
        run(["git", "commit", "-qm", "the raw data under DVC, the SSH remote"], origin)
        assert set(run(["git", "ls-files", "data/raw"], origin).stdout.split()) == \
            {"data/raw/.gitignore", "data/raw/cityscapes.dvc", "data/raw/cityscapes_small.dvc", "data/raw/pets.dvc",
             "data/raw/wgisd.dvc"}
        run(["dvc", "push"], origin, **users)

        nodes = tmp_path / "nodes"  # each task's clone lives on its node only
        env = cluster.environment_for(slurm_env, users, BENCH_REPO=str(origin), SHARD_ROOT=str(nodes),
                                      BENCH_COMMIT=run(["git", "rev-parse", "HEAD"], origin).stdout.strip(),
                                      BENCH_VENV=sys.prefix)
        # A race is two arrays (docs/scale-out.md): every template's cells to the rung first, so that each verdict
        # reads the same rung records, restored from the run-cache rather than trained again by each task.
        wait_for_jobs(submit(origin, {**env, "BENCH_LEG": "rung"}, tmp_path / "rung-%a.log"), env)
        job = submit(origin, env, tmp_path / "task-%a.log")
        stopped = f"{job}_1"  # mmdet_r18's task
        start = time.monotonic()
        while f"train_mmdet@mmdet_r18-{DATASET}-0" not in dvc_lock_stages(nodes / "mmdet_r18"):
            assert slurm(["squeue", "-h", "-j", stopped], env).strip(), (tmp_path / "task-1.log").read_text()[-3000:]
            assert time.monotonic() - start < 900, (tmp_path / "task-1.log").read_text()[-3000:]
            time.sleep(0.5)
        requeue(stopped, env)
        finished = dvc_lock_stages(nodes / "mmdet_r18")
        wait_for_jobs(job, env)

        logs = finished_task_logs(tmp_path)
        first, again = logs[1].split("shard mmdet_r18 (commit", 2)[1:]
        assert "run 0" in first.splitlines()[0] and "run 1" in again.splitlines()[0], logs[1][-3000:]
        remaining = cell_stages(["mmdet_r18"], [DATASET], ["fp32"]) - finished
        assert remaining and ran_stages(again) and not ran_stages(again) & finished, again[-3000:]
        assert ran_stages(again) | restored_stages(again) == remaining, again[-3000:]

        gather = machine(origin, "gather")
        gathered = run(["dvc", "repro", "--pull"], gather, **users)
        assert not ran_stages(gathered.stdout) & CELL_STAGES, gathered.stdout[-3000:]
        assert CELL_STAGES <= restored_stages(gathered.stdout), gathered.stdout[-3000:]
        table = pd.read_csv(gather / "reports" / "benchmark.csv")
        assert sorted(table[table["runtime"] == cells.PYTORCH]["template"]) == sorted(TEMPLATES)
        for template in TEMPLATES:
            cell = f"metrics/{template}-{DATASET}-seed0"
            assert (gather / cell / "pytorch.json").read_bytes() == (nodes / template / cell / "pytorch.json").read_bytes()
