"""`make compare`'s table from two revisions' files (read here from folders; pipelines.experiments reads them through
DVC): segm mAP and AP small, B against A, with paired intervals."""

import json

import numpy as np

from pipelines import cells, experiments
from pipelines.cells import Cell


class Folder(experiments.Revision):
    """A revision whose files are a folder's (the pipeline tests run the real DVC reader)."""

    def __init__(self, name, root, params):
        self.name, self.rev, self.root, self.params = name, None, root, params

    def read(self, path):
        found = self.root / path
        return found.read_text() if found.is_file() else None


def revision(tmp_path, name: str, small_gain: float) -> Folder:
    spread = np.linspace(-2, 2, 101)
    for seed, segm in ((0, 40.0), (1, 44.0)):
        cell = Cell("t", "d", seed)
        values = {"segm_map": segm, "segm_map_small": segm - 20 + small_gain, "segm_map_large": None}
        for path, content in ((cell.results(cells.PYTORCH, tmp_path / name / cells.METRICS), values),
                              (cell.replicates(cells.PYTORCH, tmp_path / name / cells.METRICS),
                               {k: [None] * 101 if v is None else list(v + spread) for k, v in values.items()})):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
    params = {"run": {"templates": {"torchvision": ["t"]}, "datasets": ["d"], "seeds": [0, 1]},
              "confidence": {"seed": 0}, "datasets": {"d": {}}}
    return Folder(name, tmp_path / name, params)


def test_compare_shows_the_ap_small_gain_beside_segm_map(tmp_path):
    baseline, tiled = revision(tmp_path, "a", 0.0), revision(tmp_path, "b", 15.0)
    lines = experiments.report(baseline, tiled).splitlines()
    header = [c.strip() for c in lines[4].strip("|").split("|")]
    rows = {r[1]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[6:])}
    assert header == ["template", "dataset", "a", "b", "B - A [95%]", "P(B > A)", "AP small, B - A [95%]"]
    assert rows["d"][4] == "+0.0 [0.0, 0.0]" and rows["d"][6].startswith("+15.0 [")
    assert rows["average"][6].startswith("+15.0 [")
    low = float(rows["d"][6].split("[")[1].split(",")[0])
    assert low > 0  # beyond both noises: 2 seeds of the same spread, 2 points of test-image spread


def test_a_template_the_race_stopped_in_one_revision_is_named_not_compared(tmp_path):
    baseline, raced = revision(tmp_path, "a", 0.0), revision(tmp_path, "b", 0.0)
    raced.params["run"]["templates"]["torchvision"] = ["t", "u"]
    summary = tmp_path / "b" / "reports" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"race": {"enabled": True, "rung": 0.5, "stopped": {"u": 2}}}))
    text = experiments.report(baseline, raced)
    assert "Stopped by the race, so not compared on test: u (b: stopped at epoch 2)." in text
    assert "| t " in text and "| u " not in text
