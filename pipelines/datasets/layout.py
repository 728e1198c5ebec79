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


def outside_image(polygons: list, width: int, height: int) -> str:
    """Why an object's polygons (flat x, y lists) draw nothing on a `width` x `height` image: "" where one of
    them reaches into it, else where they lie, as a reason for the statistics."""
    reach = [(min(p[0::2]), max(p[0::2]), min(p[1::2]), max(p[1::2])) for p in polygons]
    if any(x1 > 0 and x0 < width and y1 > 0 and y0 < height for x0, x1, y0, y1 in reach):
        return ""
    x0, x1 = min(r[0] for r in reach), max(r[1] for r in reach)
    y0, y1 = min(r[2] for r in reach), max(r[3] for r in reach)
    return (f"the polygon lies entirely outside the image (x {x0:g} to {x1:g}, y {y0:g} to {y1:g}; "
            f"the image is {width} wide, {height} high)")
