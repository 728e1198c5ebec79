"""Copies of this project as git + DVC repositories, driven by the real `git` and `dvc` commands, as a user's
shell would: Python writes bytecode (PYTHONDONTWRITEBYTECODE is removed), and `python` is this interpreter."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               VENV=sys.prefix, **extra)  # `make` uses this environment instead of making one in the copy
    return env


def run(args, cwd, check=True, **env):
    """Runs `args` in `cwd` (with `env` added to the environment); fails the test with its output if it fails."""
    result = subprocess.run(args, cwd=cwd, env=environment(**env), capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def ran_stages(output: str) -> set:
    """The stages whose command DVC ran, from its own output."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def restored_stages(output: str) -> set:
    """The stages DVC restored from its run-cache instead of running, from its own output."""
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def engine_of(template: str) -> str:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["templates"][template]["engine"]


def selection(*templates) -> dict:
    """params.yaml's run.templates selecting `templates` (every engine listed, [] for those with none)."""
    engines = yaml.safe_load((ROOT / "params.yaml").read_text())["run"]["templates"]
    return {engine: [t for t in templates if engine_of(t) == engine] for engine in engines}


def cell_stages(templates, datasets, precisions, seeds=(0,)) -> set:
    """DVC's names of the rung, train, evaluate, export and validate stages of these cells (dvc.yaml's families are
    named after the template's engine)."""
    names = {f"{stage}_{engine_of(t)}@{t}-{d}-{s}" for stage in ("rung", "train", "evaluate", "export")
             for t in templates for d in datasets for s in seeds}
    return names | {f"validate_{engine_of(t)}@{t}-{d}-{s}-{p}" for t in templates for d in datasets
                    for s in seeds for p in precisions}


def race_stages(templates) -> set:
    """DVC's names of the race's verdict stages of these templates."""
    return {f"race_{engine_of(t)}@{t}" for t in templates}


def edit_params(repo: Path, change) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    change(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def project_repo(repo: Path, profile) -> Path:
    """A new git repository at `repo` holding this project's files (no outputs) with `profile` applied to
    params.yaml, committed; DVC outputs are left to `dvc repro`."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "models/", "data/demo", "data/prepared")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    edit_params(repo, profile)
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "profile"], repo)
    return repo
