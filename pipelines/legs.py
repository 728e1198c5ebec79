"""The race's legs around its rung (pipelines/racing.py decides, stages/race.py writes the verdicts): where a cell's
first leg stops, and what the later stages of a cell the race stopped write in place of their outputs.

A rung is a share of each template's own schedule: a template of E epochs trains ceil(rung x E) of them (at least
one) before the verdict.

DVC has no optional outputs, so a stopped cell's train, evaluate, export and validate stages still write every
file they declare, each saying where the race stopped it, and none of them looks at the test split or builds a
model:

    models/<cell>/model.pt                  this record as JSON, not a checkpoint (the rung's checkpoint, to
                                            revive the template from, stays in race/rung/<cell>/)
    models/<cell>/ir/<precision>/stopped.json
    metrics/<cell>/training.json            the rung's training record with this record's fields added
    metrics/<cell>/<runtime>.json           this record (the report's tables show "stopped at epoch e")
    metrics/<cell>/ other JSON outputs      {} (nothing was measured)
    metrics/<cell>/*.jpg                    a picture saying so

The record: stopped_at_epoch, of_epochs (the template's schedule), rung, leader, behind (the paired difference
leader - template on the validation average, with its 95% interval), why (pipelines.racing's BEHIND: that
interval lies above the margin; HALVING: not among the best at the rung, for budget), place and of (its place by
validation average among the templates at the rung), and where the rung's checkpoint is.
"""

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from pipelines.files import write_atomic, write_text_atomic

STOPPED = "stopped_at_epoch"
IR_RECORD = "stopped.json"  # in each precision's IR folder, where model.xml would be


def rung_epoch(fraction: float, epochs: int) -> int:
    """The epoch a template of `epochs` epochs has reached at rung `fraction`."""
    return min(epochs, max(1, math.ceil(fraction * epochs - 1e-9)))


def read_stopped(path: Path) -> dict | None:
    """The stopped record in `path` (a model.pt, a results json or an IR's folder or model.xml), None where `path`
    holds a real output."""
    path = Path(path)
    if path.suffix == ".xml" or path.is_dir():
        path = (path if path.is_dir() else path.parent) / IR_RECORD
    if not path.is_file():
        return None
    with path.open("rb") as f:
        if f.read(1) != b"{":  # a checkpoint is a zip archive (torch.save), an IR folder holds no record
            return None
    found = json.loads(path.read_text())
    return found if STOPPED in found else None


def write_stopped(path: Path, record: dict) -> None:
    write_text_atomic(path, json.dumps(record, indent=2))


def write_stopped_ir(ir_dir: Path, precisions: list, record: dict) -> None:
    """An IR folder with one record per precision in place of its model.xml."""
    for precision in precisions:
        write_stopped(Path(ir_dir) / precision / IR_RECORD, record)


def describe(record: dict) -> str:
    """"stopped at epoch 2 of 4", as every table shows it."""
    return f"stopped at epoch {record[STOPPED]} of {record['of_epochs']}"


def write_stopped_picture(path: Path, record: dict) -> None:
    """A picture in place of evaluate's: what the race decided, since no test image was looked at."""
    picture = Image.new("RGB", (640, 80), (235, 235, 235))
    draw = ImageDraw.Draw(picture)
    behind = record["behind"]
    draw.text((12, 14), f"{describe(record)} by the race: not evaluated on test", fill=(0, 0, 0))
    draw.text((12, 44), f"validation average {behind['difference']:.1f} points behind {record['leader']} "
                        f"[{behind['low']:.1f}, {behind['high']:.1f}]", fill=(0, 0, 0))
    write_atomic(Path(path), lambda staged: picture.save(staged, quality=90))
