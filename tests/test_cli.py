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
