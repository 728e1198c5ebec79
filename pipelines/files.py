"""Outputs written whole or not at all: each file (or folder) is written under a temporary name beside its place and
then renamed there, so a program killed part-way leaves the previous version, or nothing, under the real name, and
at most a hidden `.<name>.tmp<suffix>` beside it. A reader that finds the real name finds it finished.

A rename within one folder is atomic (os.replace), but it cannot put a folder where another one is: the old folder is
renamed out of the way first and removed last, so a kill in between leaves the real name absent, never a folder
half-written, half-removed or mixed (an IR's model.xml beside another export's model.bin).
"""

import os
import shutil
from pathlib import Path


def temporary(path: Path) -> Path:
    """Where `path` is staged: beside it, hidden, with its suffix kept (PIL and OpenVINO choose a format by it)."""
    return path.with_name(f".{path.name}.tmp{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def put_in_place(staged: Path, path: Path) -> None:
    """Moves a staged file or folder to `path`, replacing what is there (a folder whole: none of its files stays)."""
    if staged.is_dir() and path.exists():
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
        os.replace(staged, path)
        _remove(old)
    else:
        os.replace(staged, path)


def write_atomic(path: Path, write) -> Path:
    """Calls `write(staged)`, which writes the file or folder `path` should hold at the path it is given (a folder:
    creating it), then puts it in place; returns `path`. If `write` fails, what `path` held is left as it was and
    the staged copy is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = temporary(path)
    _remove(staged)  # left by a run that was killed
    try:
        write(staged)
        put_in_place(staged, path)
    except BaseException:
        _remove(staged)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """`path.write_text(text)`, whole or not at all."""
    return write_atomic(path, lambda staged: staged.write_text(text))
