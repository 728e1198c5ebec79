"""Puts the real data under DVC: every folder of data/raw (a dataset in its owner's layout, or the snapshots the
templates start from) becomes a DVC-tracked input, `data/raw/<folder>.dvc`, to commit with git.

    python -m pipelines.datasets.track            # every folder of data/raw; `make track` runs this
    python -m pipelines.datasets.track pets       # only these

Why: the git-ignored working copy is seen by `dvc repro` and `dvc exp run` in the workspace only. Queued and
temporary experiments run in a copy that holds what git and DVC track, and shards on other machines get their
inputs from the DVC remote; a tracked folder reaches all of them (from the cache, or `dvc pull`). A folder
whose content did not change since it was tracked costs a re-hash and changes nothing.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from pipelines.cli import run

RAW = Path("data/raw")


def folders(root: Path, names: list[str]) -> list[Path]:
    """The folders of `root` to track: `names`, or all but hidden ones (downloads, unfinished unpacking)."""
    if names:
        missing = [n for n in names if not (root / n).is_dir()]
        if missing:
            sys.exit(f"track: no folder {', '.join(str(root / n) for n in missing)}")
        return [root / n for n in names]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def track(paths: list[Path]) -> list[Path]:
    """`dvc add`s each folder; returns the .dvc files written."""
    if not paths:
        return []
    result = subprocess.run(["dvc", "add", "--quiet", *map(str, paths)])
    if result.returncode:
        sys.exit(f"track: `dvc add {' '.join(map(str, paths))}` failed (exit {result.returncode}); see above")
    return [p.with_name(p.name + ".dvc") for p in paths]


def report(written: list[Path]) -> None:
    print("tracked by DVC: " + ", ".join(map(str, written)))
    print(f"commit them: git add {' '.join(map(str, written))} && git commit -m 'raw data'; "
          f"`dvc push` sends the data to the remote for other machines")


def main(args=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="folders of --root to track; default every one")
    p.add_argument("--root", type=Path, default=RAW)
    args = p.parse_args(args)
    if not args.root.is_dir():
        sys.exit(f"track: {args.root} does not exist: put the datasets there first (README, 'Your data')")
    written = track(folders(args.root, args.names))
    if written:
        report(written)
    else:
        print(f"track: nothing to track in {args.root}")


if __name__ == "__main__":
    run(main)
