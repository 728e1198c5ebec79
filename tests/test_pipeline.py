"""The real DVC pipeline, end to end, on a tiny profile in a temporary copy of the repository."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.datasets import demo

ROOT = Path(__file__).resolve().parents[1]
# The five reference datasets, and a user's COCO data added by a params.yaml entry alone.
DATASETS = ["cityscapes", "pets", "pets_half", "wgisd_1", "wgisd_5", "user_coco"]
USER_COCO = {"format": "coco_json", "path": "user_coco",
             "options": {"annotations": {"train": "labels/train.json", "test": "labels/test.json"},
                         "image_root": "photos"},
             "subsets": {"train": "train", "test": "test"}, "val_ratio": 0.25, "seed": 0}
PRECISIONS = ["fp32", "bf16", "int8"]


def run(args, cwd, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A committed copy of this repository whose params select a tiny profile; `dvc repro` has run."""
    repo = tmp_path_factory.mktemp("bench") / "repo"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "models/", "data/demo", "data/prepared")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["demo"].update(cityscapes={"train": 8, "val": 4}, pets={"trainval": 12, "test": 6},
                          wgisd={"train": 12, "test": 6})
    params["templates"]["tiny"].update(epochs=1, input_size=96, warmup_iters=2)
    params["export"].update(precisions=PRECISIONS, calibration_images=2)
    params["speed"].update(warmup=1, repeats=2, throughput_seconds=0.3)
    params["datasets"]["user_coco"] = USER_COCO
    demo.make_coco_json(repo / "data" / "demo" / "user_coco", 12, 6, seed=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny profile"], repo)
    first = run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first run"], repo)
    return repo, first.stdout


def ran_stages(output: str) -> set:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_report_matches_metrics(repo):
    repo, output = repo
    assert {f"validate@tiny-{d}-0-{p}" for d in DATASETS for p in PRECISIONS} <= ran_stages(output)
    table = pd.read_csv(repo / "reports" / "benchmark.csv")
    assert sorted(table["dataset"]) == sorted(DATASETS) and set(table["template"]) == {"tiny"}
    for row in table.itertuples():
        pytorch = json.loads((repo / "metrics" / f"tiny-{row.dataset}-seed0" / "pytorch.json").read_text())
        ir = json.loads((repo / "metrics" / f"tiny-{row.dataset}-seed0" / "ir_fp32.json").read_text())
        int8 = json.loads((repo / "metrics" / f"tiny-{row.dataset}-seed0" / "ir_int8.json").read_text())
        assert row.segm_map == pytest.approx(pytorch["segm_map"]) and row.ir_segm_map == pytest.approx(ir["segm_map"])
        assert row.ir_int8_segm_map == pytest.approx(int8["segm_map"]) and row.ir_int8_latency_ms > 0
        bf16 = json.loads((repo / "metrics" / f"tiny-{row.dataset}-seed0" / "ir_bf16.json").read_text())
        assert row.ir_bf16_segm_map == pytest.approx(bf16["segm_map"]) and bf16["inference_precision"] in ("bf16", "f32")
        assert row.bbox_map == pytest.approx(pytorch["bbox_map"]) and row.gflops == pytorch["gflops"] > 0
    markdown = (repo / "reports" / "benchmark.md").read_text()
    line = next(l for l in markdown.splitlines() if l.startswith("| tiny"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    average, per_dataset = float(cells[3]), [float(c) for c in cells[4:4 + len(DATASETS)]]
    assert average == pytest.approx(sum(per_dataset) / len(DATASETS), abs=0.06)
    assert re.search(r"\| user_coco\s+\| train\s+\|\s+\d+ \|", markdown)  # its statistics too
    assert "## Speed" in markdown and "## Per-class segm AP" in markdown
    # Every picture the report links is there.
    for picture in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (repo / "reports" / picture).stat().st_size > 1000, picture
    assert len(re.findall(r"\(predictions/tiny-[a-z_0-9]+-seed0.jpg\)", markdown)) == len(DATASETS)
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert summary["tiny"]["segm_map_average"] == pytest.approx(average, abs=0.06)


@pytest.mark.slow
def test_second_repro_runs_nothing(repo):
    repo, _ = repo
    again = run(["dvc", "repro"], repo)
    assert ran_stages(again.stdout) == set()
    assert "up to date" in again.stdout


@pytest.mark.slow
def test_changing_one_template_param_reruns_its_stages_and_report_only(repo):
    repo, _ = repo
    result = run(["dvc", "exp", "run", "-n", "lower-lr", "-S", "templates.tiny.lr=0.005"], repo)
    expected = {f"{stage}@tiny-{d}-0" for stage in ("train", "evaluate", "export") for d in DATASETS}
    expected |= {f"validate@tiny-{d}-0-{p}" for d in DATASETS for p in PRECISIONS}
    assert ran_stages(result.stdout) == expected | {"report"}
    # The README's comparison commands, as written there.
    shown = run(["dvc", "exp", "show", "--md"], repo).stdout
    assert "lower-lr" in shown and "tiny.segm_map_average" in shown and "tiny.segm_map_pets" in shown
    assert "templates.tiny.lr" in shown
    compact = run(["make", "compare"], repo).stdout
    header = next(line for line in compact.splitlines() if line.startswith("| Experiment"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    # Only columns that differ between rows are kept: a dataset both runs score 0 on may drop out.
    expected = ["Experiment", "tiny.segm_map_average"] + [f"tiny.segm_map_{d}" for d in DATASETS] + ["templates.tiny.lr"]
    assert columns == [c for c in expected if c in columns] and "templates.tiny.lr" in columns
    diff = run(["dvc", "exp", "diff", "HEAD", "lower-lr"], repo).stdout
    assert "tiny.segm_map_average" in diff and "templates.tiny.lr" in diff
    plots = run(["dvc", "plots", "diff", "HEAD", "lower-lr", "-o", "plots_out"], repo).stdout
    assert (repo / "plots_out" / "index.html").is_file(), plots


@pytest.mark.slow
def test_incomplete_dataset_root_stops_prepare_with_clear_message(repo):
    repo, _ = repo
    broken = repo / "broken"
    shutil.copytree(repo / "data" / "demo" / "pets", broken / "pets")
    (broken / "pets" / "annotations" / "trainval.txt").unlink()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data_dir"] = "broken"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run([sys.executable, "-m", "stages.prepare", "--dataset", "pets", "--out", str(broken / "out"),
                  "--stats", str(broken / "stats.json")], repo, check=False)
    assert failed.returncode != 0
    message = failed.stderr.strip().splitlines()
    assert message[0] == ("prepare: dataset 'pets' (oxford_pets at broken/pets): "
                          "broken/pets/annotations/trainval.txt is missing; expected under broken/pets:")
    assert "Traceback" not in failed.stderr
    via_dvc = run(["dvc", "repro", "prepare@pets"], repo, check=False)
    assert via_dvc.returncode != 0 and "broken/pets/annotations/trainval.txt is missing" in via_dvc.stderr + via_dvc.stdout
