"""Stage prepare: imports one dataset with Datumaro, splits it and writes COCO jsons plus statistics."""

import argparse
import json
import sys
from pathlib import Path

from pipelines.cli import run
from pipelines.config import load_params
from pipelines.datasets.layout import DatasetLayoutError
from pipelines.datasets.prepare import prepare


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True, help="key under `datasets` in params.yaml")
    p.add_argument("--out", type=Path, required=True, help="folder for the COCO jsons and images")
    p.add_argument("--stats", type=Path, required=True, help="json file for the dataset statistics")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    params = load_params()
    spec = params.datasets.get(args.dataset)
    if spec is None:
        sys.exit(f"prepare: no dataset {args.dataset!r} under `datasets` in params.yaml")
    root = Path(params.data_dir) / spec.path
    try:
        stats = prepare(spec, root, args.out)
    except DatasetLayoutError as error:
        sys.exit(f"prepare: dataset {args.dataset!r} ({spec.format} at {root}): {error}")
    args.stats.parent.mkdir(parents=True, exist_ok=True)
    args.stats.write_text(json.dumps(stats, indent=2))
    splits = stats["splits"].values()
    sizes = ", ".join(f"{role} {split['images']}" for role, split in stats["splits"].items())
    print(f"prepared {args.dataset}: {len(stats['labels'])} classes, images: {sizes}")
    left_out = (len(stats["skipped_images"]), sum(len(s["skipped_objects"]) for s in splits),
                sum(len(s["converted"]) for s in splits))
    if any(left_out):
        print("left out {} images and {} objects, converted {} images; each is named with its reason in {}"
              .format(*left_out, args.stats))


if __name__ == "__main__":
    run(main)
