"""The report from metrics files alone: the long table, intervals of both noises, the recommendation, plots and their
DVC data, atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import cells
from pipelines.cells import Cell
from pipelines.report import document, tables
from pipelines.report.publish import publish
from stages.report import inputs

TEMPLATES, DATASETS, SEEDS = ["fast", "slow"], ["pets", "wgisd_1"], [0, 1]
SEGM = {("fast", "pets", 0): 60.0, ("fast", "pets", 1): 64.0, ("fast", "wgisd_1", 0): 20.0, ("fast", "wgisd_1", 1): 30.0,
        ("slow", "pets", 0): 70.0, ("slow", "pets", 1): 71.0, ("slow", "wgisd_1", 0): 40.0, ("slow", "wgisd_1", 1): 43.0}
LATENCY = {"fast": 10.0, "slow": 50.0}


def write_json(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@pytest.fixture
def metrics(tmp_path):
    spread = np.linspace(-2, 2, 101)  # bootstrap replicates as evaluate writes them: 2 points around the mAP
    for (template, dataset, seed), segm in SEGM.items():
        cell = Cell(template, dataset, seed)
        root = tmp_path / "metrics"
        write_json(cell.results(cells.PYTORCH, root), {
            "segm_map": segm, "bbox_map": segm + 1, "gflops": 3.0, "params_m": 11.0, "latency_ms": 2 * LATENCY[template],
            "finished": f"2026-11-22T0{seed}:00:00+00:00", "cpu": "test CPU", "cpu_cores": 2, "deploy_f1": 90.0})
        write_json(cell.replicates(cells.PYTORCH, root), {"segm_map": list(segm + spread),
                                                          "bbox_map": list(segm + 1 + spread)})
        write_json(cell.results("ir_fp32", root), {"segm_map": segm, "latency_ms": LATENCY[template],
                                                   "throughput_fps": 50.0})
        write_json(cell.replicates("ir_fp32", root), {"segm_map": list(segm + spread), "bbox_map": list(spread)})
        write_json(cell.metrics_dir(root) / cells.TRAINING_FILE, {"best_epoch": 2, "best_val_segm_map": segm + 3,
                                                               "epochs_run": 3, "train_seconds": 9.5})
        write_json(cell.metrics_dir(root) / cells.PER_CLASS_FILE, {"cat": {"segm_ap": segm, "segm_ap50": 1,
                                                                           "bbox_ap": 1, "bbox_ap50": 1}})
        curve = cell.metrics_dir(root) / cells.VAL_SEGM_CURVE
        curve.parent.mkdir(parents=True, exist_ok=True)
        curve.write_text("step\tsegm_map\n" + "".join(f"{e}\t{segm * e / 3}\n" for e in (1, 2, 3)))
    (cell.metrics_dir(root) / cells.RECIPE_FILE).write_text("lr: 0.01\n")
    (tmp_path / "stats").mkdir()
    return tmp_path


def write(root, out, precisions=("fp32",), templates=TEMPLATES, seeds=SEEDS, target="fp32", budget=None):
    found = inputs(root / "metrics", root / "stats", templates, DATASETS, seeds, list(precisions), 0, target, budget)
    publish(out, *document.build(found))
    return found


def table_row(markdown: str, heading: str, first_cell: str) -> list:
    section = markdown.split(f"## {heading}\n", 1)[1]
    line = next(l for l in section.splitlines() if l.startswith(f"| {first_cell} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_long_table_holds_every_field_of_every_cell_file(metrics, tmp_path):
    long = write(metrics, tmp_path / "reports").long
    assert len(long) == len(SEGM) * 2 and set(long["runtime"]) == {"pytorch", "ir_fp32"}
    csv = pd.read_csv(tmp_path / "reports" / "benchmark.csv")
    for column in ("best_val_segm_map", "epochs_run", "train_seconds", "throughput_fps", "deploy_f1", "minus_pytorch"):
        assert column in csv, column
    row = csv[(csv["template"] == "fast") & (csv["dataset"] == "pets") & (csv["seed"] == 1)]
    assert row.set_index("runtime").loc["ir_fp32", "minus_pytorch"] == 0.0
    assert row.set_index("runtime").loc["pytorch", "best_val_segm_map"] == 67.0


def test_two_seeds_give_mean_std_and_intervals_wider_than_the_test_images_alone(metrics, tmp_path):
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    row = table_row(markdown, "Segm mAP", "fast")
    # Per seed: averages 40 and 47; per dataset 60/64 and 20/30; then each one's 95% interval.
    assert [c.split(" [")[0] for c in row[3:6]] == ["43.5 ± 4.9", "62.0 ± 2.8", "25.0 ± 7.1"]
    assert "mean ± std over seeds 0, 1" in markdown
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    points = {"segm_map_average": 56.0, "segm_map_pets": 70.5, "segm_map_wgisd_1": 41.5}
    assert {k: v for k, v in summary["slow"].items() if k in points} == points
    for name, point in points.items():  # training noise included: wider than the test images' 2 points
        assert summary["slow"][f"{name}_low"] < point - 2 and summary["slow"][f"{name}_high"] > point + 2
    noise = table_row(markdown, "How sure", "wgisd_1")  # pooled: (50 + 4.5) / 2 = 27.25 -> 5.22 points, 2 df;
    assert noise[1:] == ["5.22", "2", "5.22", "2"]        # two datasets are too few to moderate it


def test_recommendation_agrees_with_the_tables_and_summary(metrics, tmp_path):
    """slow beats fast by 12.5 points on average, far beyond both noises: the report says to fine-tune slow and
    the paired table calls the gap distinguishable; summary.json names it under keys every experiment shares."""
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    advice = markdown.split("## Recommendation\n", 1)[1].split("\n## ", 1)[0]
    assert "**Fine-tune `slow`**: `slow` (56.0 [" in advice and "test images and training seeds" in advice
    assert "Decided by: **accuracy**." in advice and "For deployment as **IR FP32**" in advice
    average = table_row(markdown, "How sure", "average")
    assert average[1:3] == ["slow", "fast"] and average[3].startswith("+12.5 [") and average[5] == "yes"
    assert 0.95 < float(average[4]) < 1  # the seeds' spread (up to 10 points) makes it less than sure
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())["recommended"]
    assert summary["template"] == "slow" and summary["segm_map_average"] == 56.0 and summary["training_noise_measured"]
    assert summary["decided_by"] == "accuracy" and summary["runtime"] == "ir_fp32" and not summary["speed_borderline"]


def test_one_seed_says_training_noise_was_not_measured(metrics, tmp_path):
    write(metrics, tmp_path / "reports", seeds=[0])
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    advice = markdown.split("## Recommendation\n", 1)[1].split("\n## ", 1)[0]
    assert advice.strip().startswith("Training noise was not measured")
    assert table_row(markdown, "How sure", "average")[-1] == "test images only"
    assert not json.loads((tmp_path / "reports" / "summary.json").read_text())["recommended"]["training_noise_measured"]


def test_epoch_averages_mark_the_best_epoch(metrics, tmp_path):
    found = write(metrics, tmp_path / "reports")
    epochs = tables.epoch_averages(found.curves, DATASETS)
    fast = epochs[epochs["template"] == "fast"].set_index("epoch")
    assert fast.loc[3, "pets"] == pytest.approx(62.0) and fast.loc[3, "average"] == pytest.approx(43.5)
    assert list(fast["best"]) == [False, False, True]
    data = json.loads((tmp_path / "reports" / "plots" / "epochs.json").read_text())
    assert {"template": "slow", "epoch": 3, "val_segm_map": 56.0, "best": "yes"} in data


def test_pareto_front_plots_and_their_dvc_data(metrics, tmp_path):
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    # fast: 10 ms, 43.5; slow: 50 ms, 56.0: neither beats the other on both.
    assert table_row(markdown, "Accuracy against speed", "fast")[-1] == "yes"
    for picture in ("segm_map.png", "accuracy_latency.png", "epochs.png"):
        assert (tmp_path / "reports" / picture).stat().st_size > 1000 and f"]({picture})" in markdown
    points = json.loads((tmp_path / "reports" / "plots" / "accuracy_latency.json").read_text())
    assert [(p["template"], p["latency_ms"], p["segm_map"], p["pareto"]) for p in points] == [
        ("fast", 10.0, 43.5, "yes"), ("slow", 50.0, 56.0, "yes")]
    bars = json.loads((tmp_path / "reports" / "plots" / "segm_map.json").read_text())
    assert {(b["template"], b["dataset"]) for b in bars} == {(t, d) for t in TEMPLATES for d in DATASETS}
    assert "```yaml\nlr: 0.01\n```" in markdown
    assert table_row(markdown, "When and where", "fast")[1:] == ["test CPU", "2", "2026-11-22T00:00:00+00:00",
                                                                  "2026-11-22T01:00:00+00:00", "4"]


def test_pareto_drops_a_template_beaten_on_both():
    points = pd.DataFrame({"latency_ms": [10, 20, 30], "accuracy": [50, 40, 60]}, index=["a", "b", "c"])
    assert tables.pareto(points).to_dict() == {"a": True, "b": False, "c": True}


def test_missing_cell_reads_not_run(metrics, tmp_path):
    Cell("slow", "pets", 1).results(cells.PYTORCH, metrics / "metrics").unlink()
    write(metrics, tmp_path / "reports")
    row = table_row((tmp_path / "reports" / "benchmark.md").read_text(), "Segm mAP", "slow")
    assert row[3] == "not run" and row[4] == "not run" and row[5].startswith("41.5 ± 2.1 [")


def test_interrupted_report_leaves_the_previous_one_whole(metrics, tmp_path, monkeypatch):
    out = tmp_path / "reports"
    write(metrics, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_json(Cell("fast", "pets", 0).results(cells.PYTORCH, metrics / "metrics"), {"segm_map": 1.0})

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(document.plots, "tradeoff_scatter", killed)
    with pytest.raises(KeyboardInterrupt):
        write(metrics, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".tmp" not in p.name}
    assert after == before


@pytest.mark.parametrize("ran_in", ["bf16", "f32"])
def test_bf16_rows_and_what_it_ran_in(metrics, tmp_path, ran_in):
    for (template, dataset, seed), segm in SEGM.items():
        write_json(Cell(template, dataset, seed).results("ir_bf16", metrics / "metrics"), {
            "segm_map": segm - 0.5, "latency_ms": LATENCY[template] / 4, "throughput_fps": 99.0,
            "inference_precision": ran_in})
    write(metrics, tmp_path / "reports", ["fp32", "bf16"])
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    speed = markdown.split("## Speed\n", 1)[1]
    line = next(l for l in speed.splitlines() if l.startswith("| fast ") and "IR BF16" in l)
    assert [c.strip() for c in line.strip("|").split("|")][2:5] == ["2.50", "99.00", "8.00"]  # 20 ms / 2.5 ms
    ir = markdown.split("## OpenVINO IR against PyTorch\n", 1)[1]
    line = next(l for l in ir.splitlines() if l.startswith("| fast ") and "| pets " in l and "IR BF16" in l)
    assert [c.strip() for c in line.strip("|").split("|")][3:5] == ["61.5", "-0.5"]  # 62 - 0.5, no replicates
    assert ("BF16 ran in f32 here" in markdown) == (ran_in == "f32")


def test_only_selected_precisions_and_cells_reach_the_report(metrics, tmp_path):
    """An IR precision dropped from export.precisions, or a template dropped from run.templates, leaves
    its files under metrics/; none of its numbers or pictures may reach reports/."""
    for (template, dataset, seed), segm in SEGM.items():
        cell = Cell(template, dataset, seed)
        write_json(cell.results("ir_int8", metrics / "metrics"), {"segm_map": segm - 1, "latency_ms": 1.0})
        (cell.metrics_dir(metrics / "metrics") / cells.PICTURE_FILE).write_bytes(cell.name.encode())
    out = tmp_path / "reports"
    write(metrics, out, ["fp32", "int8"])
    assert "IR INT8" in (out / "benchmark.md").read_text()
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "fast-pets-seed0.jpg", "fast-wgisd_1-seed0.jpg", "slow-pets-seed0.jpg", "slow-wgisd_1-seed0.jpg"]
    write(metrics, out, ["fp32"], templates=["fast"])
    markdown, csv = (out / "benchmark.md").read_text(), (out / "benchmark.csv").read_text()
    assert "int8" not in csv.lower() and "int8" not in markdown.lower()
    assert set(pd.read_csv(out / "benchmark.csv")["template"]) == {"fast"} and "slow" not in markdown
    assert "slow" not in (out / "summary.json").read_text()
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["fast-pets-seed0.jpg", "fast-wgisd_1-seed0.jpg"]
    assert (out / "predictions" / "fast-pets-seed0.jpg").read_bytes() == b"fast-pets-seed0"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # nothing staged is left behind


def write_speed(metrics_root, rounds: dict, runtime="ir_fp32", share=0.0):
    write_json(metrics_root / "metrics" / cells.SPEED_FILE, {"runtime": runtime, "rounds": 10, "datasets": {
        d: {"ms": rounds, "others_cpu_share": share, "inference_precision": ["f32"]} for d in DATASETS}})


def test_an_int8_target_that_reverses_the_ranking_decides_and_is_flagged(metrics, tmp_path):
    """slow leads in PyTorch by 12.5 points, but its INT8 IRs lose 20: at an INT8 target fast is recommended, and
    the report flags the reversal with both paired intervals; summary.json says where and by what it was decided."""
    spread = np.linspace(-2, 2, 101)
    for (template, dataset, seed), segm in SEGM.items():
        cell, value = Cell(template, dataset, seed), segm - (20.0 if template == "slow" else 0.5)
        write_json(cell.results("ir_int8", metrics / "metrics"), {"segm_map": value, "latency_ms": 1.0})
        write_json(cell.replicates("ir_int8", metrics / "metrics"), {"segm_map": list(value + spread)})
    write_speed(metrics, {"fast": [10.0 + i % 3 for i in range(10)], "slow": [40.0 + i % 3 for i in range(10)]},
                runtime="ir_int8", share=0.4)
    write(metrics, tmp_path / "reports", ["fp32", "int8"], target="int8")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    advice = markdown.split("## Recommendation\n", 1)[1].split("\n## ", 1)[0]
    assert "For deployment as **IR INT8**" in advice and "**Fine-tune `fast`**" in advice
    assert "Judged by the PyTorch models instead, the choice would be `slow`" in advice
    assert "other processes used 40% on pets, 40% on wgisd_1 of its CPU" in advice
    flagged = table_row(markdown, "Where the target ranks differently", "average")
    assert flagged[1:3] == ["slow", "fast"] and flagged[3].startswith("+12.5 [") and flagged[4].startswith("-7.0 [")
    assert flagged[5] == "no"  # the seeds' spread (up to 10 points) keeps -7.0 within the noise
    assert [table_row(markdown, "Where the target ranks differently", d)[1] for d in DATASETS] == ["slow", "slow"]
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())["recommended"]
    # At INT8 the two are indistinguishable, and fast takes 3.7 times less time side by side.
    assert (summary["template"], summary["runtime"], summary["decided_by"]) == ("fast", "ir_int8", "speed")
    assert summary["segm_map_average"] == 43.0
    side = table_row(markdown, "Speed", "slow")
    assert side[-1] == "41.0 [40.0, 42.0], 3.73x [3.50, 4.00]"  # medians 41 and 11 ms; round by round 40/10 ... 42/12


def test_side_by_side_speed_decides_between_indistinguishable_templates(metrics, tmp_path):
    """Two templates with the same results: the one that takes twice the time side by side is set aside; with equal
    times, the first in run.templates, and the report says which criterion decided."""
    for (template, dataset, seed), segm in SEGM.items():
        if template == "slow":
            for runtime in (cells.PYTORCH, "ir_fp32"):
                fast = Cell("fast", dataset, seed)
                for path in (fast.results(runtime, metrics / "metrics"), fast.replicates(runtime, metrics / "metrics")):
                    target = Cell("slow", dataset, seed).metrics_dir(metrics / "metrics") / path.name
                    target.write_bytes(path.read_bytes())
    write_speed(metrics, {"fast": [10.0] * 10, "slow": [20.0] * 10})
    write(metrics, tmp_path / "reports", templates=["slow", "fast"])
    advice = (tmp_path / "reports" / "benchmark.md").read_text().split("## Recommendation\n", 1)[1]
    assert "**Fine-tune `fast`**" in advice and "Decided by: **speed**." in advice
    assert "`slow` takes 2.00x [2.00, 2.00] the time of `fast`" in advice
    write_speed(metrics, {"fast": [10.0] * 10, "slow": [10.0] * 10})
    write(metrics, tmp_path / "reports", templates=["slow", "fast"])
    advice = (tmp_path / "reports" / "benchmark.md").read_text().split("## Recommendation\n", 1)[1]
    assert "**Fine-tune `slow`**" in advice and "Decided by: **order**." in advice


def test_object_sizes_and_what_each_templates_input_makes_of_them(metrics, tmp_path):
    """Pets-like test objects of 40 x 40 px in 400 x 200 images: none is small as they are; a 224 px keep_ratio input
    scales them by 224 / 400 to 22 px (small), a 480 px one to 48 px (not small); stretch scales each side apart."""
    objects = [[1600, 400, 200]] * 3 + [[40000, 400, 200]]  # three 40 x 40 objects and one 200 x 200
    write_json(metrics / "stats" / "pets.json", {"labels": ["cat"], "skipped_images": [], "splits": {
        "test": {"images": 4, "instances": {"cat": 4}, "crowd_regions": {}, "images_without_objects": 0,
                 "converted": [], "skipped_objects": [], "object_sizes": objects}}})
    for template, recipe in (("fast", "input_size: 224\nresize_mode: keep_ratio\n"),
                             ("slow", "input_size: 480\nresize_mode: stretch\n")):
        (Cell(template, "pets", 0).metrics_dir(metrics / "metrics") / cells.RECIPE_FILE).write_text(recipe)
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    assert table_row(markdown, "Object sizes", "pets")[1:] == ["test", "4", "40 / 40 / 152", "14.1", "0.0"]
    assert table_row(markdown, "Object sizes", "fast")[1:] == ["224 px keep_ratio", "75.0"]
    assert table_row(markdown, "Object sizes", "slow")[1:] == ["480 px stretch", "0.0"]  # 40 * 480/400 x 40 * 480/200
    assert ("- `fast` sees 75% of the test objects of pets under 32 x 32 pixels (COCO's small) at its 224 px keep_ratio "
            "input, against 0% in the images as they are") in markdown and "`slow` sees" not in markdown


def test_a_tiled_template_sees_objects_at_their_size_in_a_tile():
    """The same 40 x 40 px objects in 400 x 200 images: a 224 px input on 200 px tiles shows them at 45 px (not
    small), where the whole image at 224 px shows them at 22 px; an image no larger than a tile is seen whole."""
    from pipelines.report import tables

    stats = {"pets": {"splits": {"test": {"object_sizes": [[1600, 400, 200]] * 3 + [[1600, 150, 100]]}}}}
    recipes = {"tiled": {"input_size": 224, "resize_mode": "keep_ratio", "tiling": {"size": 200, "overlap": 0.2}},
               "whole": {"input_size": 224, "resize_mode": "keep_ratio", "tiling": None}}
    shares = tables.small_at_input(stats, recipes).set_index("template")
    assert shares.loc["tiled", "input"] == "224 px keep_ratio on 200 px tiles" and shares.loc["tiled", "small"] == 0
    assert shares.loc["whole", "input"] == "224 px keep_ratio" and shares.loc["whole", "small"] == 75


def test_a_tiled_template_is_told_of_smaller_tiles_not_of_tiling():
    """The hints for objects too small at the input, and for missed small objects, name tiling to an untiled
    template and smaller tiles to a tiled one."""
    from pipelines.report import tables, verdicts

    stats = {"d": {"splits": {"test": {"object_sizes": [[100, 800, 400]] * 4}}}}  # 10 x 10 px objects
    recipes = {"tiled": {"input_size": 224, "resize_mode": "keep_ratio", "tiling": {"size": 300, "overlap": 0.2}},
               "whole": {"input_size": 224, "resize_mode": "keep_ratio", "tiling": None}}
    lines = verdicts.too_small(tables.small_at_input(stats, recipes))
    assert "smaller tiles or a larger input size may help (`tiling: {size: ...}`" in lines[0] and "`tiled`" in lines[0]
    assert "`dvc exp run -S '++templates.whole.tiling=auto'`" in lines[1]
    counts = pd.DataFrame({"small": [9], "all": [10]}, index=["missed"])
    assert "smaller tiles (`tiling: {size: ...}` below its 300 px)" in verdicts._hint("missed", counts, "tiled", 300)
    assert "'++templates.whole.tiling=auto'" in verdicts._hint("missed", counts, "whole")
    assert tables.tile_sizes(recipes) == {"tiled": 300}


def test_ap_by_object_size_with_both_noises_and_the_small_gap_that_separates(metrics, tmp_path):
    """AP small / medium beside segm mAP per dataset; `slow` (say, tiled) finds small objects 30 points better, relative to its segm mAP, than
    `fast` (38.5 on pets): beyond both noises; AP large is '-' where the test split holds nothing large (None in the files)."""
    root = metrics / "metrics"
    spread = np.linspace(-2, 2, 101)
    for (template, dataset, seed), segm in SEGM.items():
        cell = Cell(template, dataset, seed)
        small = segm - 20 if template == "fast" else segm + 10
        # wgisd_1's test split holds no small object: its training noise is not measured, pets' still is.
        values = {"segm_map_small": small if dataset == "pets" else None, "segm_map_medium": segm,
                  "segm_map_large": None}
        results = json.loads(cell.results(cells.PYTORCH, root).read_text())
        write_json(cell.results(cells.PYTORCH, root), {**results, **values})
        replicates = json.loads(cell.replicates(cells.PYTORCH, root).read_text())
        write_json(cell.replicates(cells.PYTORCH, root), {**replicates, "segm_map_small": list(small + spread),
                                                          "segm_map_medium": list(segm + spread),
                                                          "segm_map_large": [None] * len(spread)})
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    section = markdown.split("## Segm AP by object size\n", 1)[1].split("\n## ", 1)[0]
    row = next([c.strip() for c in l.strip("|").split("|")] for l in section.splitlines()
               if l.startswith("| pets ") and "| slow " in l)
    assert row[2].startswith("70.5 ± 0.7 [") and row[3].startswith("80.5 ± 0.7 [") and row[5] == "-"
    assert row[6] == "50.0"  # the side-by-side time is not recorded here: the cell's own IR latency
    pairs = section.split("AP small of the template best", 1)[1]
    pair = next([c.strip() for c in l.strip("|").split("|")] for l in pairs.splitlines() if l.startswith("| pets "))
    assert pair[1:3] == ["slow", "fast"] and pair[3].startswith("+38.5 [") and pair[5] == "yes"  # 80.5 - 42.0


RACE = {"enabled": True, "rung": 0.5, "margin": 0.0, "keep": [], "eta": 1}


def write_raced(root, late_at: float, why: dict | None = None):
    """Validation records and recipes (4 epochs) for fast and slow, and a third template, `late`, that the race
    stopped at epoch 2 of 4 with validation mAP `late_at`: its cells hold what a stopped cell's stages write."""
    spread = np.linspace(-2, 2, 101)
    for template in TEMPLATES + ["late"]:
        for dataset in DATASETS:
            for seed in SEEDS:
                cell, level = Cell(template, dataset, seed), (late_at if template == "late" else 50.0) + seed
                folder = cell.metrics_dir(root)
                epochs = [{"epoch": e, "segm_map": level * e / 2, "seconds": 2.0,
                           "replicates": list(level * e / 2 + spread)} for e in (1, 2, 3)[:2 if template == "late"
                                                                                     else 3]]
                write_json(folder / cells.VALIDATION_FILE, {"resamples": 101, "seed": 0, "epochs": epochs})
                (folder / cells.RECIPE_FILE).parent.mkdir(parents=True, exist_ok=True)
                (folder / cells.RECIPE_FILE).write_text("epochs: 4\nlr: 0.01\n")
                if template == "late":
                    record = {"template": "late", "stopped_at_epoch": 2, "of_epochs": 4, "rung": 0.5,
                              "leader": "slow", "behind": {"difference": 45.0, "low": 40.0, "high": 50.0,
                                                           "p_better": 1.0}, **(why or {})}
                    write_json(folder / cells.TRAINING_FILE, {"best_epoch": 2, "best_val_segm_map": level,
                                                              "epochs_run": 2, "epochs": 4, "train_seconds": 6.0,
                                                              **record})
                    for runtime in (cells.PYTORCH, "ir_fp32"):
                        write_json(cell.results(runtime, root), record)
                        write_json(cell.replicates(runtime, root), {})


def test_a_template_the_race_stopped_is_listed_as_stopped_in_every_table_and_the_race_says_why(metrics, tmp_path):
    write_raced(metrics / "metrics", late_at=5.0)
    found = inputs(metrics / "metrics", metrics / "stats", TEMPLATES + ["late"], DATASETS, SEEDS, ["fp32"], 0, "fp32",
                   race=RACE)
    publish(tmp_path / "reports", *document.build(found))
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    race = markdown.split("## The race\n", 1)[1].split("\n## ", 1)[0]
    # Replayed from the validation records: late is behind slow beyond both noises at epoch 2 of 4.
    late = [c.strip() for c in next(line for line in race.splitlines() if "| late " in line).strip("|").split("|")]
    assert late[:3] == ["50%", "late", "2"] and late[-1] == "stopped: behind" and late[4].startswith("+")
    # 8 finishing cells x 3 epochs + 4 stopped cells x 2, against 8 x 3 + 4 x 4
    assert "Training spent: **32 of 40 epochs (80%)**" in race and "4 of 12 cells were stopped" in race
    assert "`dvc exp run -S 'race.keep=[late]'`" in race
    for heading in ("Segm mAP", "Bbox mAP", "Accuracy against speed"):
        assert "stopped at epoch 2 of 4" in table_row(markdown, heading, "late"), heading
    advice = markdown.split("## Recommendation\n", 1)[1].split("\n## ", 1)[0]
    assert "**Fine-tune `slow`**" in advice and "The race stopped `late` (stopped at epoch 2 of 4" in advice
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert summary["race"] == {"enabled": True, "rung": 0.5, "eta": 1, "stopped": {"late": 2},
                               "why": {"late": "behind"}, "epochs_spent": 32, "epochs_full": 40, "epochs_share": 0.8}
    csv = pd.read_csv(tmp_path / "reports" / "benchmark.csv")
    assert set(csv[csv["template"] == "late"]["stopped_at_epoch"]) == {2}  # the stopped cells, with what was measured
    assert "late" not in summary and summary["recommended"]["template"] == "slow"


def test_a_stop_for_budget_is_marked_as_halving_not_as_behind(metrics, tmp_path):
    # late is 0.5 points under fast and slow, within the noise; with eta 2 only ceil(3 / 2) go on
    write_raced(metrics / "metrics", late_at=49.5, why={"why": "halving", "place": 3, "of": 3})
    found = inputs(metrics / "metrics", metrics / "stats", TEMPLATES + ["late"], DATASETS, SEEDS, ["fp32"], 0, "fp32",
                   race={**RACE, "eta": 2})
    publish(tmp_path / "reports", *document.build(found))
    race = (tmp_path / "reports" / "benchmark.md").read_text().split("## The race\n", 1)[1].split("\n## ", 1)[0]
    late = [c.strip() for c in next(line for line in race.splitlines() if "| late " in line).strip("|").split("|")]
    assert late[-1] == "stopped: halving (place 3 of 3)" and "halving (`race.eta: 2`)" in race
    assert "for budget (halving: place 3 of 3 at the rung, not separated from the leader)" in race
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())["race"]
    assert summary["eta"] == 2 and summary["why"] == {"late": "halving"}


def test_without_a_race_the_report_says_so_and_its_tables_are_as_before(metrics, tmp_path):
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    assert "The race is off (`race.enabled: false`)" in markdown and "stopped at epoch" not in markdown
    assert json.loads((tmp_path / "reports" / "summary.json").read_text())["race"] == {
        "enabled": False, "rung": None, "eta": None, "stopped": {}, "why": {}}
