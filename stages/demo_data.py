"""Stage demo_data: writes the small demo datasets, each in its owner's on-disk layout."""

import argparse
from pathlib import Path

from pipelines.cli import run
from pipelines.config import load_params
from pipelines.datasets import demo


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder that receives cityscapes/, cityscapes_small/, pets/ and wgisd/")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    counts = load_params().demo
    seed = counts["seed"]
    demo.make_cityscapes(args.out / "cityscapes", counts["cityscapes"]["train"], counts["cityscapes"]["val"], seed)
    demo.make_cityscapes(args.out / "cityscapes_small", counts["cityscapes_small"]["train"],
                         counts["cityscapes_small"]["val"], seed, **demo.SMALL_OBJECTS)
    demo.make_pets(args.out / "pets", counts["pets"]["trainval"], counts["pets"]["test"], seed)
    demo.make_wgisd(args.out / "wgisd", counts["wgisd"]["train"], counts["wgisd"]["test"], seed)
    print(f"demo datasets written to {args.out}")


if __name__ == "__main__":
    run(main)
