"""Checks that a dataset folder holds what its format needs, with errors a person can act on."""

from pathlib import Path

from datumaro.components.dataset_base import DatasetItem


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


class ItemError(Exception):
    """A problem confined to one image (its annotation file is missing, broken or disagrees with it).

    `prepare` skips that image and lists it, with this message as the reason, in the statistics.
    """


def skipped_item(item_id: str, subset: str, reason: str) -> DatasetItem:
    """A placeholder for an image an importer had to leave out; `prepare` counts it and names it with `reason`."""
    return DatasetItem(id=item_id, subset=subset, attributes={"skipped": reason})
