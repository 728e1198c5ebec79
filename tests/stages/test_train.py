"""The train stage as DVC runs it: under torchrun, killed and rerun, it writes its outputs once."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from pipelines import cells
from pipelines.config import DatasetSpec
from pipelines.datasets import demo
from pipelines.datasets.prepare import prepare

ROOT = Path(__file__).resolve().parents[2]


def torchrun(workdir: Path, data: Path, port: int) -> subprocess.Popen:
    """`torchrun --nproc_per_node 2 -m stages.train ...` on the CPU (gloo)."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "stages.train", "--template", "tiny", "--seed", "0", "--data", str(data), "--out", "models/cell",
         "--metrics", "metrics/cell"],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_torchrun_writes_once_and_a_resumed_run_logs_each_epoch_once(tmp_path, tiny_spec):
    demo.make_wgisd(tmp_path / "raw", 16, 4, seed=0)
    data = tmp_path / "prepared"
    prepare(DatasetSpec("wgisd", "raw", {"train": "train", "test": "test"}, val_ratio=0.25), tmp_path / "raw", data)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["templates"] = {"tiny": dataclasses.asdict(tiny_spec(epochs=3))}
    params["run"].update(templates={"torchvision": ["tiny"], "mmdet": []}, seeds=[0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    first = torchrun(tmp_path, data, 29541)
    resume = tmp_path / "models" / "cell" / cells.RESUME_FILE
    while not resume.exists():  # epoch 1 is saved: kill every process during epoch 2
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.05)
    # torchrun starts its workers in sessions of their own: kill the whole tree, as a machine that dies would.
    tree = [first, *psutil.Process(first.pid).children(recursive=True)]
    for process in tree:
        process.send_signal(signal.SIGKILL)
    first.wait()
    done = torch.load(resume, weights_only=False)["training"]["epoch"]
    assert done < 3

    second = torchrun(tmp_path, data, 29542)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    # One process speaks: one resume line, one summary line.
    assert output.count(f"epoch {done} of 3 done") == 1 and output.count("best epoch ") == 1, output
    metrics = tmp_path / "metrics" / "cell"
    curves = sorted((metrics / "live" / "plots" / "metrics").rglob("*.tsv"))
    assert len(curves) > 5  # losses, lr, timings, validation mAPs
    for curve in curves:
        steps = [int(row.split("\t")[0]) for row in curve.read_text().splitlines()[1:]]
        assert steps == [1, 2, 3], (curve.name, steps)
    summary = json.loads((metrics / cells.TRAINING_FILE).read_text())
    recipe = yaml.safe_load((metrics / cells.RECIPE_FILE).read_text())
    assert summary["epochs_run"] == 3 and recipe["epochs"] == 3 and "seed" not in recipe  # the seed is the cell's
    # DVCLive's summary holds the kept epoch's numbers, not the last epoch's.
    kept = json.loads((metrics / "live" / "metrics.json").read_text())
    assert kept["step"] == summary["best_epoch"] and kept["val"]["segm_map"] == summary["best_val_segm_map"]
    # Every epoch's validation mAP with its bootstrap replicates, the resumed run's epochs included.
    validation = json.loads((metrics / cells.VALIDATION_FILE).read_text())
    assert [e["epoch"] for e in validation["epochs"]] == [1, 2, 3]
    best = next(e for e in validation["epochs"] if e["epoch"] == summary["best_epoch"])
    assert best["segm_map"] == summary["best_val_segm_map"]
    assert all(len(e["replicates"]) == validation["resamples"] for e in validation["epochs"])
    saved = torch.load(tmp_path / "models" / "cell" / "model.pt", weights_only=False)
    assert saved["labels"] == ["grape"] and not any(k.startswith("module.") for k in saved["model"])
