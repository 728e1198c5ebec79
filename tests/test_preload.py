"""The preload server (pipelines/preload.py, what `make benchmark` runs `dvc repro` under): a stage run in a fork
of it computes the same bytes as the stage run by itself, sees its own folder, arguments, environment and stdio,
ends with its own status, refuses a different environment, and dies with its client."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import preload

ROOT = Path(__file__).resolve().parents[1]


def under_server(script: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    """Runs the shell script as `python -m pipelines.preload bash -c <script>`."""
    return subprocess.run([sys.executable, "-m", "pipelines.preload", "bash", "-c", script], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)


def probe(out: str, *rest: str) -> str:
    return f"{sys.executable} -m tests.preload_probe {out} {' '.join(rest)}"


def test_the_engines_libraries_are_preloaded_and_none_of_the_project():
    names = preload.libraries()
    assert {"torch", "timm", "torchvision.models.detection", "mmengine.config"} <= set(names)
    loaded = subprocess.run([sys.executable, "-c", "import sys; from pipelines import preload\n"
                             "for n in preload.libraries(): __import__(n)\n"
                             "print(sorted(m for m in sys.modules if m.startswith(('mmcv.ops', 'mmcv._ext', 'mmdet'))"
                             " or m.split('.')[0] in preload.PROJECT and m not in ('pipelines', 'pipelines.preload')))"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"  # mmdet's import would run before the engine's ops.install()


def test_a_forked_stage_sees_its_own_folder_arguments_environment_and_stdio_and_ends_with_its_status(tmp_path):
    ran = under_server(f"cd {tmp_path} && {probe('seen.json', '3')}; echo status $?", ROOT, PROBE="mine")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["torch_already"], ran.stderr  # it ran in the fork, where torch is imported
    assert seen["cwd"] == str(tmp_path) and seen["argv"][1:] == ["seen.json", "3"] and seen["probe"] == "mine"
    assert seen["preload"] is None  # the fork is the stage itself: its own children start by themselves
    assert "probe on stdout" in ran.stdout and "probe on stderr" in ran.stderr and "status 3" in ran.stdout


def test_a_stage_whose_environment_differs_runs_by_itself_and_says_why(tmp_path):
    ran = under_server(f"OMP_NUM_THREADS=1 {probe(str(tmp_path / 'seen.json'))}", ROOT)
    assert ran.returncode == 0, ran.stderr
    assert not json.loads((tmp_path / "seen.json").read_text())["torch_already"]
    assert "runs by itself" in ran.stderr and "OMP_NUM_THREADS" in ran.stderr


def test_a_stage_whose_server_has_gone_runs_by_itself(tmp_path):
    ran = subprocess.run(probe(str(tmp_path / "seen.json")).split(), cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), preload.ADDRESS: str(tmp_path / "gone")})
    assert ran.returncode == 0, ran.stderr
    assert not json.loads((tmp_path / "seen.json").read_text())["torch_already"]


def test_a_fork_whose_stage_process_is_killed_dies_too(tmp_path):
    seen = tmp_path / "seen.json"
    script = (f"{probe(str(seen), 'wait')} & client=$!; while [ ! -s {seen} ]; do sleep 0.2; done; "
              f"kill -KILL $client; sleep 1; echo done")
    under_server(script, ROOT)
    fork = json.loads(seen.read_text())["pid"]
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f"/proc/{fork}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{fork}"), "the fork outlived its stage's process"


def test_sigterm_reaches_the_fork(tmp_path):
    seen = tmp_path / "seen.json"
    script = (f"{probe(str(seen), 'wait')} & client=$!; while [ ! -s {seen} ]; do sleep 0.2; done; "
              f"kill -TERM $client; wait $client; echo status $?")
    ran = under_server(script, ROOT)
    assert f"status {128 + signal.SIGTERM}" in ran.stdout, ran.stderr
    assert not os.path.exists(f"/proc/{json.loads(seen.read_text())['pid']}")


@pytest.mark.slow
def test_a_stage_trained_in_a_fork_is_byte_for_byte_the_stage_trained_by_itself(tmp_path, tiny_project):
    tiny_project(tmp_path, epochs=1, images=12)
    train = f"{sys.executable} -m stages.train --template tiny --seed 0 --data prepared"
    alone = f"env -u {preload.ADDRESS} {train} --out alone --metrics alone_m"
    ran = under_server(f"{alone} && {train} --out forked --metrics forked_m", tmp_path)
    assert ran.returncode == 0 and "runs by itself" not in ran.stderr, ran.stderr
    assert (tmp_path / "forked/model.pt").read_bytes() == (tmp_path / "alone/model.pt").read_bytes()
