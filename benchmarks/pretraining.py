"""What the ImageNet start buys: one template trained on the same data from its ImageNet weights and from random
weights, validation segm mAP per epoch side by side, then test segm mAP.

    python -m benchmarks.pretraining [--template tv_lite0] [--dataset pets] [--epochs 8] [--seed 0]

The data is the default run's prepared dataset (`dvc repro prepare` first). The random start is the same
recipe with `pretrained: none`; a random backbone cannot keep frozen layers or batch-norm statistics worth
keeping, so it trains them all (`frozen_stages: -1`, `norm_eval: false` where the template sets them) and
keeps the recipe's learning rate and schedule otherwise.
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from pipelines import checkpoints, engines, training
from pipelines.config import load_params
from pipelines.evaluation import coco_metrics
from pipelines.inference import predict_split
from pipelines.splits import PREPARED, TEST, split_file


def random_start(spec):
    """The template from random weights: nothing frozen, batch norms trained."""
    model = dict(spec.model)
    if "frozen_stages" in model:
        model["frozen_stages"] = -1
    if "norm_eval" in model:
        model["norm_eval"] = False
    overrides = model.get("overrides")
    if spec.engine == "mmdet":  # the mmdet config's own backbone settings
        model["overrides"] = {**(overrides or {}), "backbone.frozen_stages": -1, "backbone.norm_eval": False}
    return dataclasses.replace(spec, pretrained="none", model=model)


def run(spec, data: Path, seed: int) -> tuple[list, float, float]:
    """Validation segm mAP per epoch, test segm mAP of the kept epoch, minutes."""
    start = time.monotonic()
    adapter = engines.adapter(spec.engine)
    with tempfile.TemporaryDirectory() as out:
        result = training.fit(spec, adapter, data, Path(out), seed=seed, log=lambda m: print("   ", m, flush=True))
        loaded = checkpoints.load(Path(out) / "model.pt", adapter)
        results = predict_split(checkpoints.torch_predictor(loaded.graph), split_file(data, TEST), loaded.input_spec,
                                loaded.score_threshold)
    return [h["val_segm_map"] for h in result.history], coco_metrics(split_file(data, TEST), results)["segm_map"], \
        (time.monotonic() - start) / 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", default="tv_lite0")
    p.add_argument("--dataset", default="pets", help="a prepared dataset under data/prepared")
    p.add_argument("--epochs", type=int, help="default: the template's")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    spec = load_params().templates[args.template]
    spec = dataclasses.replace(spec, epochs=args.epochs or spec.epochs)
    data = PREPARED / args.dataset
    if spec.pretrained != "imagenet":
        sys.exit(f"template {args.template} starts from {spec.pretrained!r}, not imagenet: nothing to compare")
    found = {}
    for name, variant in (("ImageNet", spec), ("random", random_start(spec))):
        print(f"{args.template} from {name} weights on {data}", flush=True)
        found[name] = run(variant, data, args.seed)
    print(f"\n{args.template} on {args.dataset}, seed {args.seed}: validation segm mAP per epoch\n")
    print("| epoch | from ImageNet | from random weights | difference |\n|---:|---:|---:|---:|")
    for epoch, (a, b) in enumerate(zip(found["ImageNet"][0], found["random"][0]), 1):
        print(f"| {epoch} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    (_, imagenet, minutes), (_, scratch, minutes_random) = found["ImageNet"], found["random"]
    print(f"\ntest segm mAP of the kept epoch: ImageNet {imagenet:.1f}, random {scratch:.1f} "
          f"({imagenet - scratch:+.1f}); training took {minutes:.1f} and {minutes_random:.1f} min")


if __name__ == "__main__":
    main()
