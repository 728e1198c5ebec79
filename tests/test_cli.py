"""How a program ends: a user's mistake is a message and exit status 2, a bug keeps its traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.cli import UserError, run
from pipelines.datasets.layout import DatasetLayoutError

ROOT = Path(__file__).resolve().parents[1]


def failing(error):
    def main():
        raise error
    return main


@pytest.mark.parametrize("error", [UserError("no dataset 'x'"), DatasetLayoutError("no dataset 'x'")])
def test_a_users_mistake_is_its_message_and_exit_status_2(error, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/somewhere/stages/prepare.py", "--dataset", "x"])
    with pytest.raises(SystemExit) as ended:
        run(failing(error))
    assert ended.value.code == 2 and capsys.readouterr().err == "prepare: no dataset 'x'\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run(failing(KeyError("seed")))


def test_a_stage_given_bad_params_prints_what_is_wrong_and_exits_2(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["templates"]["tv_lite0"]["epochs"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = subprocess.run([sys.executable, "-m", "stages.prepare", "--dataset", "pets", "--out", "out", "--stats",
                          "stats.json"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert ran.stderr == "prepare: params.yaml: templates.tv_lite0.epochs is -1: a whole number >= 1\n"
    assert not (tmp_path / "out").exists()


def program(args, cwd, **env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_a_cut_checkpoint_and_a_missing_ir_are_named_without_a_traceback(tmp_path):
    """A model.pt cut short by a full disk, a model.xml whose model.bin is gone: the message names the file."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 cut short")
    evaluated = program(["stages.evaluate", "--template", "tv_lite0", "--model", "model.pt", "--test", "t.json",
                         "--val", "v.json", "--out", "o.json", "--replicates", "r.json", "--per-class", "c.json",
                         "--errors", "e.json", "--examples", "x.jpg", "--error-examples", "y.jpg"], tmp_path)
    assert evaluated.returncode == 2 and "Traceback" not in evaluated.stderr
    assert evaluated.stderr.startswith("evaluate: model.pt is not a whole checkpoint (")
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "model.xml").write_text("<net/>")
    predicted = program(["pipelines.predict", "--ir", "ir/model.xml", "--images", ".", "--out", "out"], tmp_path)
    assert predicted.returncode == 2 and "Traceback" not in predicted.stderr
    assert predicted.stderr == ("predict: ir/model.bin does not exist: an IR is a model.xml with its model.bin beside "
                                "it, as the export stage writes them\n")
