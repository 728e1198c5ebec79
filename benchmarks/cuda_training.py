"""The training loop on a CUDA GPU in full and mixed precision: speed, memory and accuracy side by side.

    python -m benchmarks.cuda_training --data data/prepared/pets [--templates tiny r50] [--epochs 3] [--workers 4]

For each template (its params.yaml recipe, started from random weights so that nothing is downloaded)
it runs the template's engine (`train`, the shared loop) on the prepared dataset three times with the same
seed: `amp: false`;
`amp: true`, which autocasts to bfloat16 on GPUs that have it; and `amp: true` as on a GPU without
bfloat16 (float16 with loss scaling; skipped where the GPU has no bfloat16, as then the second run is
that). Per run it prints training images per second and the share of that time spent waiting for data
(last epoch, validation not counted), the peak GPU memory, the final training loss and the best
validation segm mAP; then each mixed precision's speed-up and memory ratio. This checks the CUDA lines
of the training loop (autocast, GradScaler, validation on the GPU); it needs a GPU and is not a test.
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from pipelines import engines, training
from pipelines.config import load_params


def run(spec, data: Path) -> dict:
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = training.fit(spec, engines.adapter(spec.engine), data, Path(out), seed=0,
                              log=lambda m: print("   ", m, flush=True))
    last = result.history[-1]
    return {"images_per_second": last["images_per_second"], "data_wait": last["data_wait_share"],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "loss": sum(v for k, v in last.items() if k.startswith("loss")),
            "segm_map": result.best_val_segm_map, "minutes": (time.perf_counter() - start) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (train.json, val.json)")
    parser.add_argument("--templates", nargs="+", default=["tiny"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (num_workers)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark checks the GPU path of the training loop")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; data {args.data}")
    has_bf16 = torch.cuda.is_bf16_supported()
    rows = []
    for name in args.templates:
        base = dataclasses.replace(load_params().templates[name], epochs=args.epochs, pretrained="none",
                                   num_workers=args.workers)
        found = {}
        for label, amp in [("full", False), ("bfloat16" if has_bf16 else "float16", True)] + \
                          ([("float16", True)] if has_bf16 else []):
            print(f"{name}: {label}, {base.epochs} epochs, batch {base.batch_size}, {base.input_size}px", flush=True)
            # The float16 run after a bfloat16 one: the loop's choice on a GPU without bfloat16 (V100, T4).
            without_bf16 = mock.patch.object(torch.cuda, "is_bf16_supported", return_value=False) \
                if label == "float16" and has_bf16 else mock.MagicMock()
            with without_bf16:
                found[label] = run(dataclasses.replace(base, amp=amp), args.data)
        rows.append((name, found))
    print("\n| template | precision | train img/s | data wait | peak GiB | last loss | best val segm mAP | minutes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, found in rows:
        for label, r in found.items():
            print(f"| {name} | {label} | {r['images_per_second']:.1f} | {r['data_wait']:.0%} | {r['peak_gib']:.2f} | "
                  f"{r['loss']:.3f} | {r['segm_map']:.1f} | {r['minutes']:.1f} |")
    print("\n| template | precision | speed-up over full | memory ratio |")
    print("|---|---|---:|---:|")
    for name, found in rows:
        for label, r in found.items():
            if label != "full":
                print(f"| {name} | {label} | {r['images_per_second'] / found['full']['images_per_second']:.2f}x | "
                      f"{r['peak_gib'] / found['full']['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
