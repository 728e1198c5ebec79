"""A prepared dataset's splits: the roles its images are given and the COCO instances json each role is written to.

    data/prepared/<dataset>/train.json    fine-tuned on; INT8 calibration images come from it
    data/prepared/<dataset>/val.json      picks the kept epoch and the deploy score threshold; traces the IR
    data/prepared/<dataset>/test.json     every reported number is measured on it

pipelines/datasets/prepare.py writes them; training, export, speed and experiments find them through `split_file`.
dvc.yaml spells these paths with DVC's variables; tests/test_dvc_yaml.py checks them against this module. Kept apart
from prepare.py, which loads Datumaro, so that reading a split's name loads nothing.
"""

from pathlib import Path

PREPARED = Path("data/prepared")  # one folder per dataset key (the prepare stage's --out)
TRAIN, VAL, TEST = "train", "val", "test"
ROLES = (TRAIN, VAL, TEST)  # what a dataset's subsets map to (params.yaml's `datasets.<key>.subsets`)


def split_file(root: Path, role: str) -> Path:
    """The COCO instances json of split `role` (TRAIN, VAL or TEST) in prepared dataset folder `root`."""
    return Path(root) / f"{role}.json"
