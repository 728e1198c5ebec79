"""The real DVC pipeline, end to end, on a tiny profile: one `dvc repro` that every test reuses.

The first run is committed; each test that changes anything works in its own fresh clone of that
commit, its outputs checked out from the same DVC cache, as a second user (or machine) would. So the
tests run in any order, and each clone shows whether a committed result is up to date without rerunning.
Python writes bytecode throughout (PYTHONDONTWRITEBYTECODE is removed from the environment), as on a
user's machine: it must never count as a change.
"""

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.datasets import demo
from pipelines import cells
from tests.repos import (ROOT, cell_stages, edit_params, engine_of, project_repo, race_stages, ran_stages,
                         restored_stages, run, selection)

# Three importers end to end: Cityscapes (its val serves as test), WGISD (box-only images, a split from train)
# and a user's COCO data added by a params.yaml entry alone. Pets' importer is tested on its own
# (tests/datasets/test_pets.py): a fourth dataset here would cost a quarter more of every cell-running test.
DATASETS = ["cityscapes", "wgisd_5", "user_coco"]
USER_COCO = {"format": "coco_json", "path": "user_coco",
             "options": {"annotations": {"train": "labels/train.json", "test": "labels/test.json"},
                         "image_root": "photos"},
             "subsets": {"train": "train", "test": "test"}, "val_ratio": 0.25, "seed": 0}
TEMPLATES = ["tiny", "mmdet_r18"]  # one template of each engine
SEEDS = [0, 1]  # as the default run: the training noise is measured
PRECISIONS = ["fp32"]  # bf16's IR is tested on its own (tests/test_export.py); a second precision is int8's test


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A git repository holding this project on a tiny profile, after its first `dvc repro`, committed
    as a user would (dvc.lock and reports/summary.json; the outputs are in DVC's cache); returns its path
    and the repro's output."""
    def tiny_profile(params):
        params["demo"].update(cityscapes={"train": 8, "val": 4}, cityscapes_small={"train": 1, "val": 1},
                              pets={"trainval": 12, "test": 6},
                              wgisd={"train": 12, "test": 6})
        for template in TEMPLATES:
            params["templates"][template].update(epochs=1, input_size=96, warmup_iters=2)
        params["run"].update(templates=selection(*TEMPLATES), datasets=DATASETS, seeds=SEEDS)
        params["datasets"] = {**{k: params["datasets"][k] for k in DATASETS if k in params["datasets"]},
                              "user_coco": USER_COCO}
        params["export"].update(precisions=PRECISIONS, calibration_images=2)
        params["speed"].update(warmup=1, repeats=2, throughput_seconds=0.3)
    repo = project_repo(tmp_path_factory.mktemp("bench") / "repo", tiny_profile)
    demo.make_coco_json(repo / "data" / "demo" / "user_coco", 12, 6, seed=0)
    run(["git", "add", "-f", "data/demo/user_coco"], repo)  # the user's own data, kept in git
    run(["git", "commit", "-qm", "a user's own COCO data"], repo)
    first = run(["make", "benchmark"], repo)  # `dvc repro` under the preload server (pipelines/preload.py)
    assert "preload: runs by itself" not in first.stderr, first.stderr  # every stage ran in a fork of it
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first run"], repo)
    return repo, first.stdout


def clone(bench_repo: Path, destination: Path) -> Path:
    """A fresh clone of the committed first run, its DVC outputs checked out from the same cache."""
    run(["git", "clone", "-q", str(bench_repo), str(destination)], bench_repo.parent)
    run(["dvc", "cache", "dir", "--local", str(bench_repo / ".dvc" / "cache")], destination)
    run(["dvc", "checkout", "-q"], destination)
    return destination


@pytest.mark.slow
def test_report_matches_metrics(bench):
    repo, output = bench
    assert cell_stages(TEMPLATES, DATASETS, PRECISIONS, SEEDS) <= ran_stages(output)
    table = pd.read_csv(repo / "reports" / "benchmark.csv")
    runtimes = [cells.PYTORCH] + [cells.runtime(p) for p in PRECISIONS]
    assert len(table) == len(TEMPLATES) * len(DATASETS) * len(SEEDS) * len(runtimes)
    for row in table.itertuples():
        cell = cells.Cell(row.template, row.dataset, row.seed)
        found = json.loads(cell.results(row.runtime, repo / "metrics").read_text())
        trained = json.loads((cell.metrics_dir(repo / "metrics") / cells.TRAINING_FILE).read_text())
        assert row.segm_map == pytest.approx(found["segm_map"]) and row.bbox_map == pytest.approx(found["bbox_map"])
        assert row.best_val_segm_map == pytest.approx(trained["best_val_segm_map"]) and row.epochs_run == 1
        # every interval holds its point, PyTorch's and each IR's
        assert found["segm_map_low"] <= found["segm_map"] <= found["segm_map_high"]
        assert found["bbox_map_low"] <= found["bbox_map"] <= found["bbox_map_high"]
        assert 0 <= found["deploy_f1"] <= 100 and "deploy_threshold" in found
        replicates = json.loads(cell.replicates(row.runtime, repo / "metrics").read_text())
        assert len(replicates["segm_map"]) == 1000
        if row.runtime == cells.PYTORCH:
            assert row.gflops == found["gflops"] > 0
        else:  # the IR computed what it was asked to: f32, or bf16 where the CPU has it
            expected = "bf16" if row.runtime == "ir_bf16" and bf16_capable() else "f32"
            assert found["inference_precision"] == expected
    markdown = (repo / "reports" / "benchmark.md").read_text()
    advice = markdown.split("## Recommendation", 1)[1].split("\n## ", 1)[0]
    assert "**Fine-tune `" in advice and "Decided by: **" in advice
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert summary["recommended"]["template"] in TEMPLATES and summary["recommended"]["training_noise_measured"]
    assert f"Decided by: **{summary['recommended']['decided_by']}**." in advice
    # Both templates timed side by side on every dataset, every seed's IR, in the configured rounds.
    speed = json.loads((repo / "metrics" / cells.SPEED_FILE).read_text())
    assert speed["runtime"] == "ir_fp32" and set(speed["datasets"]) == set(DATASETS)
    for found in speed["datasets"].values():
        assert set(found["ms"]) == set(TEMPLATES) and all(len(v) == speed["rounds"] for v in found["ms"].values())
        assert 0 <= found["others_cpu_share"] <= 1
    for template in TEMPLATES:
        line = next(l for l in markdown.splitlines() if l.startswith(f"| {template} "))
        points = [c.strip().split(" ")[0] for c in line.strip("|").split("|")]  # before ± and the interval
        average, per_dataset = float(points[3]), [float(c) for c in points[4:4 + len(DATASETS)]]
        assert average == pytest.approx(sum(per_dataset) / len(DATASETS), abs=0.06)
        assert summary[template]["segm_map_average"] == pytest.approx(average, abs=0.06)
    assert re.search(r"\| user_coco\s+\| train\s+\|\s+\d+ \|", markdown)  # its statistics too
    for section in ("## Speed", "## Per-class segm AP", "## Validation segm mAP per epoch", "## How sure"):
        assert section in markdown
    for picture in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):  # every picture the report links is there
        assert (repo / "reports" / picture).stat().st_size > 1000, picture
    assert sorted(p.name for p in (repo / "reports" / "predictions").iterdir()) == sorted(
        f"{t}-{d}-seed0{kind}.jpg" for t in TEMPLATES for d in DATASETS for kind in ("", "-errors"))
    for name in ("accuracy_latency.json", "segm_map.json", "epochs.json"):
        assert json.loads((repo / "reports" / "plots" / name).read_text()), name


def bf16_capable() -> bool:
    import openvino as ov
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.slow
def test_bytecode_and_a_fresh_clone_leave_everything_up_to_date(bench, tmp_path):
    repo, _ = bench
    # Import every stage and engine as a user's shell or test run would: Python writes __pycache__ beside them.
    run([sys.executable, "-c", "import stages.train, stages.evaluate, stages.export, stages.validate, stages.report, "
                               "stages.prepare, stages.demo_data, pipelines.engines.torchvision"], repo)
    assert list((repo / "pipelines" / "engines" / "torchvision").glob("__pycache__/*.pyc"))  # in a folder dep
    assert "Data and pipelines are up to date." in run(["dvc", "status"], repo).stdout
    fresh = clone(repo, tmp_path / "fresh")  # no bytecode at all here
    assert "Data and pipelines are up to date." in run(["dvc", "status"], fresh).stdout
    again = run(["dvc", "repro"], fresh)
    assert ran_stages(again.stdout) == set(), again.stdout


def wait_for_queue(repo: Path, limit_s: float = 1200) -> None:
    start = time.monotonic()
    while re.search(r"\b(Queued|Running)\b", run(["dvc", "queue", "status"], repo).stdout):
        assert time.monotonic() - start < limit_s, run(["dvc", "queue", "status"], repo).stdout
        time.sleep(5)


def experiments(repo: Path, kind: str = "params", file: str = "params.yaml") -> dict:
    """name -> params.yaml (or another file of `dvc exp show --json`'s `kind`) of every experiment it lists."""
    found = {}
    for commit in json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout):
        for group in commit.get("experiments") or []:
            for rev in group["revs"]:
                found[rev["name"]] = rev["data"][kind][file]["data"]
    return found


def compared(output: str) -> dict:
    """`make compare`'s output: experiment name -> (params line, table rows as lists of cells)."""
    found = {}
    for block in output.split("## ")[1:]:
        name = block.split(" against ", 1)[0]
        lines = block.splitlines()
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")][1:]
        found[name] = (next(line for line in lines if line.startswith("Params that differ")), rows)
    return found


@pytest.mark.slow
def test_a_queued_grid_compares_against_its_baseline_with_intervals(bench, tmp_path):
    """The README's sweep: a queued grid of two values of tiny's lr, one of them the baseline's. The other reruns
    only tiny's cells; `make compare` prints each against the baseline, the identical one +0.0 [0.0, 0.0] on
    every line, and so are the untouched template's lines; DVC's own tools list the per-cell metrics, sort on
    the summary's shared key and overlay the report's plots."""
    repo = clone(bench[0], tmp_path / "exp")
    baseline_lr = yaml.safe_load((repo / "params.yaml").read_text())["templates"]["tiny"]["lr"]
    run(["dvc", "exp", "run", "--queue", "-S", f"templates.tiny.lr={baseline_lr},{baseline_lr / 2}"], repo)
    run(["dvc", "queue", "start", "-j", "1"], repo)
    wait_for_queue(repo)
    status = run(["dvc", "queue", "status"], repo).stdout
    names = {p["templates"]["tiny"]["lr"]: name for name, p in experiments(repo).items()}
    same, lower = names[baseline_lr], names[baseline_lr / 2]
    logs = {name: run(["dvc", "queue", "logs", name], repo).stdout for name in (same, lower)}
    assert status.count("Success") == 2, status + logs[lower][-3000:]
    # The speed stage times every template side by side: a retrained template retimes them all (seconds). Every
    # verdict reads every template's rung records (a second each), but mmdet_r18's verdict is unchanged, so none of
    # its cells reruns.
    expected = cell_stages(["tiny"], DATASETS, PRECISIONS, SEEDS) | race_stages(TEMPLATES) | {"speed", "report"}
    assert ran_stages(logs[lower]) == expected, logs[lower][-3000:]
    assert ran_stages(logs[same]) == set(), logs[same][-3000:]

    found = compared(run(["make", "compare"], repo).stdout)
    params, rows = found[same]
    assert params == "Params that differ: none" and rows and all(r[4] == "+0.0 [0.0, 0.0]" for r in rows), rows
    params, rows = found[lower]
    assert params == f"Params that differ: templates.tiny.lr: {baseline_lr!r} -> {baseline_lr / 2!r}"
    assert sorted({(r[0], r[1]) for r in rows}) == sorted((t, d) for t in TEMPLATES for d in DATASETS + ["average"])
    assert all(r[4] == "+0.0 [0.0, 0.0]" for r in rows if r[0] == "mmdet_r18"), rows  # untouched: the same models
    tiny = [r[4] for r in rows if r[0] == "tiny"]
    interval = r"[+-]\d+\.\d \[-?\d+\.\d, -?\d+\.\d\]"
    assert any(r != "+0.0 [0.0, 0.0]" for r in tiny) and all(re.fullmatch(interval, r) for r in tiny), tiny

    ordered = run(["dvc", "exp", "show", "--md", "--sort-by", "reports/summary.json:recommended.segm_map_average"],
                  repo)
    assert same in ordered.stdout and lower in ordered.stdout
    metrics = run(["dvc", "metrics", "diff", "HEAD", lower], repo).stdout
    assert "metrics/tiny-cityscapes-seed0/pytorch.json" in metrics and "segm_map" in metrics, metrics
    plots = run(["dvc", "plots", "diff", "HEAD", lower, "-o", "plots_out"], repo).stdout
    page = (repo / "plots_out" / "index.html").read_text()
    for title in ("Accuracy against latency", "Test segm mAP per dataset", "Validation segm mAP per epoch"):
        assert title in page, plots


@pytest.mark.slow
def test_real_data_under_dvc_reaches_queued_and_temporary_experiments(bench, tmp_path):
    """README, "Your data": datasets put where real data goes and tracked with `make track` reach the copies
    that queued and temporary experiments run in. Here the demo data is the real data: prepare reads it from
    data/raw (new deps, so it runs) into the same bytes, so every cell is restored from the run-cache."""
    repo = clone(bench[0], tmp_path / "raw")
    for name in ("cityscapes", "pets", "wgisd", "user_coco"):
        shutil.copytree(repo / "data" / "demo" / name, repo / "data" / "raw" / name)
    run(["make", "track"], repo)
    run(["git", "add", "data/raw"], repo)
    run(["git", "commit", "-qm", "the real data, under DVC"], repo)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # git holds the .dvc files, DVC the data
    run(["dvc", "exp", "run", "--queue", "-n", "rawq", "-S", "data_dir=data/raw"], repo)
    run(["dvc", "queue", "start"], repo)
    wait_for_queue(repo)
    log = run(["dvc", "queue", "logs", "rawq"], repo).stdout
    assert "Success" in run(["dvc", "queue", "status"], repo).stdout, log[-3000:]
    temporary = run(["dvc", "exp", "run", "--temp", "-n", "rawt", "-S", "data_dir=data/raw"], repo).stdout
    # The queued one prepared the data in its copy; the temporary one restores that from the run-cache, which
    # DVC does only after hashing the data/raw folders it depends on in its own copy.
    assert {f"prepare@{d}" for d in DATASETS} <= ran_stages(log), log[-3000:]
    assert {f"prepare@{d}" for d in DATASETS} <= restored_stages(temporary) | ran_stages(temporary), temporary[-3000:]
    for output in (log, temporary):
        assert not ran_stages(output) & cell_stages(TEMPLATES, DATASETS, PRECISIONS, SEEDS), output[-3000:]
    for name, params in experiments(repo).items():
        assert params["data_dir"] == "data/raw", name
    summaries = experiments(repo, "metrics", "reports/summary.json")  # each one's report ran to its end
    assert {"rawq", "rawt"} <= set(summaries)
    assert all(s["recommended"]["template"] in TEMPLATES for s in summaries.values()), summaries


@pytest.mark.slow
def test_editing_one_engine_leaves_the_other_engines_cells_up_to_date(bench, tmp_path):
    repo = clone(bench[0], tmp_path / "engines")
    config = repo / "pipelines" / "engines" / "mmdet" / "configs" / "mask_rcnn_fpn.py"
    for edited, engine in ((config, "mmdet"), (repo / "pipelines" / "engines" / "torchvision" / "model.py",
                                               "torchvision")):
        original = edited.read_text()
        edited.write_text(original + "\n# edited\n")
        changed = set(json.loads(run(["dvc", "status", "--json"], repo).stdout))
        assert changed and all(re.match(rf"(rung|train|evaluate|export)_{engine}@", s) for s in changed), changed
        assert {f"train_{engine}@{t}-{d}-{s}" for t in TEMPLATES if engine_of(t) == engine
                for d in DATASETS for s in SEEDS} <= changed
        edited.write_text(original)


def report_files(repo: Path) -> dict:
    return {name: (repo / "reports" / name).read_text() for name in ("benchmark.md", "benchmark.csv", "summary.json")}


@pytest.mark.slow
def test_adding_a_precision_runs_only_its_stages_and_dropping_it_removes_its_columns(bench, tmp_path):
    repo = clone(bench[0], tmp_path / "int8")
    # One template and seed of the first run (NNCF's quantization takes most of a minute per model here): a
    # narrower selection reruns only what gathers the cells.
    edit_params(repo, lambda p: p["run"].update(templates=selection("tiny"), seeds=[0]))
    # tiny's verdict now races it alone: the same verdict (it goes on), so nothing of its cells reruns.
    assert ran_stages(run(["dvc", "repro"], repo).stdout) == race_stages(["tiny"]) | {"speed", "report"}
    edit_params(repo, lambda p: p["export"].update(precisions=PRECISIONS + ["int8"]))
    added = run(["dvc", "repro"], repo)
    # export writes one folder per precision; fp32 comes out byte for byte the same, so its validations stay:
    # only the new IRs are scored.
    expected = {name for name in cell_stages(["tiny"], DATASETS, PRECISIONS + ["int8"], [0])
                if name.startswith("export") or name.endswith("-int8")} | {"speed", "report"}
    assert ran_stages(added.stdout) == expected, added.stdout[-3000:]
    assert all("int8" in text.lower() for name, text in report_files(repo).items() if name != "summary.json")
    edit_params(repo, lambda p: p["export"].update(precisions=PRECISIONS))
    dropped = run(["dvc", "repro"], repo)
    # The exports are back to the first run's params: DVC's run-cache restores their IRs instead of rerunning,
    # and the speed stage's timing of them.
    assert ran_stages(dropped.stdout) == {"report"}, dropped.stdout[-3000:]
    assert not list((repo / "models").glob("*/ir/int8"))
    for name, text in report_files(repo).items():
        assert "int8" not in text.lower(), name


@pytest.mark.slow
def test_incomplete_dataset_root_stops_prepare_with_clear_message(bench, tmp_path):
    repo = clone(bench[0], tmp_path / "broken")
    broken = repo / "broken"
    shutil.copytree(repo / "data" / "demo" / "pets", broken / "pets")
    (broken / "pets" / "annotations" / "trainval.txt").unlink()
    pets = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["pets"]  # not among the bench's DATASETS
    edit_params(repo, lambda p: p.update(data_dir="broken", datasets={**p["datasets"], "pets": pets}))
    failed = run([sys.executable, "-m", "stages.prepare", "--dataset", "pets", "--out", str(broken / "out"),
                  "--stats", str(broken / "stats.json")], repo, check=False)
    assert failed.returncode != 0
    message = failed.stderr.strip().splitlines()
    assert message[0] == ("prepare: dataset 'pets' (oxford_pets at broken/pets): "
                          "broken/pets/annotations/trainval.txt is missing; expected under broken/pets:")
    assert "Traceback" not in failed.stderr
    via_dvc = run(["dvc", "repro", "prepare@pets"], repo, check=False)
    assert via_dvc.returncode != 0 and "broken/pets/annotations/trainval.txt is missing" in via_dvc.stderr + via_dvc.stdout
