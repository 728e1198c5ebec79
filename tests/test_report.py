"""The report from metrics files alone: mean ± std over seeds, Pareto front, summary, atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import report

TEMPLATES, DATASETS, SEEDS = ["fast", "slow"], ["pets", "wgisd_1"], [0, 1]
SEGM = {("fast", "pets", 0): 60.0, ("fast", "pets", 1): 64.0, ("fast", "wgisd_1", 0): 20.0, ("fast", "wgisd_1", 1): 30.0,
        ("slow", "pets", 0): 70.0, ("slow", "pets", 1): 71.0, ("slow", "wgisd_1", 0): 40.0, ("slow", "wgisd_1", 1): 43.0}
LATENCY = {"fast": 10.0, "slow": 50.0}


@pytest.fixture
def metrics(tmp_path):
    for (template, dataset, seed), segm in SEGM.items():
        folder = tmp_path / "metrics" / report.cell(template, dataset, seed)
        folder.mkdir(parents=True)
        (folder / "pytorch.json").write_text(json.dumps({
            "segm_map": segm, "bbox_map": segm + 1, "gflops": 3.0, "params_m": 11.0, "latency_ms": 2 * LATENCY[template],
            "finished": f"2026-11-22T0{seed}:00:00+00:00", "cpu": "test CPU", "cpu_cores": 2}))
        (folder / "ir_fp32.json").write_text(json.dumps({"segm_map": segm, "latency_ms": LATENCY[template]}))
        # Bootstrap replicates as evaluate writes them: here 101 values spread 2 points around the cell's mAP.
        spread = np.linspace(-2, 2, 101)
        (folder / report.BOOTSTRAP_FILE).write_text(json.dumps({"segm_map": list(segm + spread),
                                                                "bbox_map": list(segm + 1 + spread)}))
        (folder / "per_class.json").write_text(json.dumps({"cat": {"segm_ap": segm, "segm_ap50": 1, "bbox_ap": 1,
                                                                   "bbox_ap50": 1}}))
    (tmp_path / "stats").mkdir()
    return tmp_path


def write(root, out, precisions=("fp32",), templates=TEMPLATES):
    long = report.collect(root / "metrics", templates, DATASETS, SEEDS, list(precisions))
    classes = report.per_class(root / "metrics", templates, DATASETS, SEEDS)
    report.write_report(long, classes, root / "metrics", root / "stats", DATASETS, list(precisions),
                        {"fast": {"lr": 0.01}}, out)
    return long


def table_row(markdown: str, heading: str, first_cell: str) -> list:
    section = markdown.split(f"## {heading}\n", 1)[1]
    line = next(l for l in section.splitlines() if l.startswith(f"| {first_cell} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_two_seeds_give_mean_and_std_of_the_per_seed_metrics(metrics, tmp_path):
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    cells = table_row(markdown, "Segm mAP", "fast")
    # Per seed: averages 40 and 47; per dataset 60/64 and 20/30; then each one's 95% interval.
    assert [c.split(" [")[0] for c in cells[3:6]] == ["43.5 ± 4.9", "62.0 ± 2.8", "25.0 ± 7.1"]
    assert "mean ± std over seeds 0, 1" in markdown
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    points = {"segm_map_average": 56.0, "segm_map_pets": 70.5, "segm_map_wgisd_1": 41.5}
    assert {k: v for k, v in summary["slow"].items() if k in points} == points
    for name, point in points.items():  # seeds drawn too: the interval is wider than one seed's 2 points
        assert summary["slow"][f"{name}_low"] < point - 1 and summary["slow"][f"{name}_high"] > point + 1


def test_recommendation_agrees_with_the_tables(metrics, tmp_path):
    """slow beats fast by 12.5 points on average, far beyond the replicates' 2-point spread: the report says
    to fine-tune slow, on average and on each dataset, and the paired table calls the gap distinguishable."""
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    advice = markdown.split("## Recommendation\n", 1)[1].split("\n## ", 1)[0]
    assert "**Fine-tune `slow` (56.0 [" in advice
    assert "- pets: best `slow` (70.5 [" in advice and "indistinguishable: none; choose `slow`" in advice
    average = table_row(markdown, "How sure", "average")
    assert average[1:3] == ["slow", "fast"] and average[3].startswith("+12.5 [") and average[4:] == ["1.000", "yes"]
    ranks = table_row(markdown, "How sure", "slow")
    assert ranks[1:3] == ["1.00", "2"]
    for low, high, point in zip(*(pd.read_csv(tmp_path / "reports" / "benchmark.csv")[c]
                                  for c in ("segm_map_low", "segm_map_high", "segm_map"))):
        assert np.isnan(low) or low <= point <= high


def test_pareto_front_and_plots(metrics, tmp_path):
    write(metrics, tmp_path / "reports")
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    # fast: 10 ms, 43.5; slow: 50 ms, 56.0: neither beats the other on both.
    assert table_row(markdown, "Accuracy against speed", "fast")[-1] == "yes"
    assert table_row(markdown, "Accuracy against speed", "slow")[-1] == "yes"
    for picture in ("segm_map.png", "accuracy_latency.png"):
        assert (tmp_path / "reports" / picture).stat().st_size > 1000 and f"]({picture})" in markdown
    assert "```yaml\nlr: 0.01\n```" in markdown
    assert table_row(markdown, "When and where", "fast")[1:] == ["test CPU", "2", "2026-11-22T00:00:00+00:00",
                                                                  "2026-11-22T01:00:00+00:00", "4"]


def test_pareto_drops_a_template_beaten_on_both():
    points = pd.DataFrame({"latency_ms": [10, 20, 30], "accuracy": [50, 40, 60]}, index=["a", "b", "c"])
    assert report.pareto(points).to_dict() == {"a": True, "b": False, "c": True}


def test_missing_cell_reads_not_run(metrics, tmp_path):
    (metrics / "metrics" / report.cell("slow", "pets", 1) / "pytorch.json").unlink()
    write(metrics, tmp_path / "reports")
    cells = table_row((tmp_path / "reports" / "benchmark.md").read_text(), "Segm mAP", "slow")
    assert cells[3] == "not run" and cells[4] == "not run" and cells[5].startswith("41.5 ± 2.1 [")


def test_interrupted_report_leaves_the_previous_one_whole(metrics, tmp_path, monkeypatch):
    out = tmp_path / "reports"
    write(metrics, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (metrics / "metrics" / report.cell("fast", "pets", 0) / "pytorch.json").write_text(json.dumps({"segm_map": 1.0}))

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_tradeoff", killed)
    with pytest.raises(KeyboardInterrupt):
        write(metrics, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == before


@pytest.mark.parametrize("ran_in", ["bf16", "f32"])
def test_bf16_columns_and_what_it_ran_in(metrics, tmp_path, ran_in):
    for (template, dataset, seed), segm in SEGM.items():
        (metrics / "metrics" / report.cell(template, dataset, seed) / "ir_bf16.json").write_text(json.dumps(
            {"segm_map": segm - 0.5, "latency_ms": LATENCY[template] / 4, "throughput_fps": 99.0,
             "inference_precision": ran_in}))
    write(metrics, tmp_path / "reports", ["fp32", "bf16"])
    markdown = (tmp_path / "reports" / "benchmark.md").read_text()
    # fast: PyTorch 20 ms, FP32 10 ms, BF16 2.5 ms.
    speed = table_row(markdown, "Speed", "fast")
    header = next(l for l in markdown.split("## Speed\n", 1)[1].splitlines() if l.startswith("| template"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert speed[columns.index("BF16 latency (ms)")] == "2.50"
    assert speed[columns.index("BF16 speed-up over PyTorch")] == "8.00"
    assert speed[columns.index("FP32 speed-up over PyTorch")] == "2.00"
    assert table_row(markdown, "OpenVINO IR against PyTorch", "fast")[5:7] == ["61.5", "-0.5"]  # pets: 62 - 0.5
    assert ("BF16 ran in f32 here" in markdown) == (ran_in == "f32")


def test_only_selected_precisions_and_cells_reach_the_report(metrics, tmp_path):
    """An IR precision dropped from export.precisions, or a template dropped from run.templates, leaves
    its files under metrics/; none of its numbers or pictures may reach reports/."""
    for (template, dataset, seed), segm in SEGM.items():
        folder = metrics / "metrics" / report.cell(template, dataset, seed)
        (folder / "ir_int8.json").write_text(json.dumps({"segm_map": segm - 1, "latency_ms": 1.0}))
        (folder / report.PICTURE).write_bytes(f"{template}-{dataset}-{seed}".encode())
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
    assert (out / "predictions" / "fast-pets-seed0.jpg").read_bytes() == b"fast-pets-0"
    assert not list(out.glob(".*"))  # nothing staged is left behind
