"""Checks that a dataset folder holds what its format needs, with errors a person can act on."""

from pathlib import Path


class DatasetLayoutError(Exception):
    """A dataset root is missing or lacks a file or folder its format needs."""


def require(root: Path, entries: list[str], layout: str) -> None:
    """Raises `DatasetLayoutError` naming the first of `entries` (paths under `root`) that is missing.

    `layout` is the expected tree, printed in the message so the user sees where each file goes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} does not exist or is not a folder; expected:\n{layout}")
    for entry in entries:
        if not (root / entry).exists():
            raise DatasetLayoutError(f"{root / entry} is missing; expected under {root}:\n{layout}")
