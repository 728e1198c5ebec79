"""Training throughput of the project's loop against a plain torchvision loop: same model, data and batch.

    python benchmarks/training.py [--template tiny] [--images 64] [--repeats 2]

Prepares the demo Pets data (`prepare`, as the pipeline does), then trains the template on the same
images with the same batch size, both from the same initial weights:

- project: `pipelines.engines.torchvision.training.train_one_epoch` over the letterboxing `CocoInstances` data (flip,
  masks with boxes, warm-up schedule, gradient clipping), which also measures how much of the step
  time is spent waiting for the next batch;
- plain: the loop of torchvision's detection references written out here, images as tensors at
  their own size, targets with full-size masks, the model's own transform resizing and normalising.

It prints images per second of each (best of `--repeats` passes), their ratio, and the project's
data-wait share.
"""

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms.functional import to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines import inference  # noqa: E402
from pipelines.config import load_params  # noqa: E402
from pipelines.datasets import demo  # noqa: E402
from pipelines.datasets.prepare import prepare  # noqa: E402
from pipelines.engines.torchvision import training  # noqa: E402
from pipelines.engines.torchvision.model import build_model  # noqa: E402


class PlainCoco(torch.utils.data.Dataset):
    """A prepared split the torchvision-references way: image tensor at its size, full-size targets."""

    def __init__(self, split_json: Path):
        coco = json.loads(split_json.read_text())
        self.root, self.images = split_json.parent, coco["images"]
        self.anns = {i["id"]: [a for a in coco["annotations"] if a["image_id"] == i["id"] and not a["iscrowd"]]
                     for i in self.images}

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        info = self.images[index]
        image = to_tensor(Image.open(self.root / info["file_name"]).convert("RGB"))
        anns = self.anns[info["id"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = torch.from_numpy(np.stack([mask_utils.decode(a["segmentation"]) for a in anns])) if anns \
            else torch.zeros((0, info["height"], info["width"]), dtype=torch.uint8)
        return image, {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns]), "masks": masks}


def plain_pass(model, loader, lr: float) -> float:
    """One pass of the references' loop; returns seconds."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                                weight_decay=1e-4)
    start = time.perf_counter()
    for images, targets in loader:
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def project_pass(spec, initial: dict, loader, num_classes: int) -> tuple[float, float]:
    """One pass of `train_one_epoch`; returns seconds and the data-wait share."""
    run = training.Training(spec, num_classes, torch.Generator().manual_seed(0), 1, torch.device("cpu"))
    run.model.load_state_dict(initial)
    scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda i: 1.0)
    start = time.perf_counter()
    losses = training.train_one_epoch(run, loader, scheduler.step, 1, show_progress=False)
    return time.perf_counter() - start, losses["data_wait_share"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", default="tiny")
    p.add_argument("--images", type=int, default=64, help="training images per pass")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    spec = load_params().templates[args.template]
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    demo.make_pets(work / "pets", args.images + 16, 8, seed=0)
    prepare("oxford_pets", work / "pets", work / "prepared", {}, {"trainval": "train", "test": "test"},
            1.0, 16 / (args.images + 16), 0.2, 0)
    split = work / "prepared" / "train.json"
    num_classes = len(json.loads(split.read_text())["categories"])
    torch.manual_seed(0)
    initial = build_model(spec, num_classes).state_dict()
    plain_model = build_model(spec, num_classes)
    plain_model.load_state_dict(initial)
    # The references' setup: the model's transform resizes (here to the same input size) and normalises.
    plain_model.transform = GeneralizedRCNNTransform(spec.input_size, spec.input_size, inference.MEAN, inference.STD)
    batch = dict(batch_size=spec.batch_size, shuffle=True, collate_fn=training.collate, num_workers=spec.num_workers)
    ours = torch.utils.data.DataLoader(training.CocoInstances(split, inference.InputSpec(spec.input_size), flip=True),
                                       generator=torch.Generator().manual_seed(0), **batch)
    plain = torch.utils.data.DataLoader(PlainCoco(split), generator=torch.Generator().manual_seed(0), **batch)
    images = len(ours.dataset)
    project_times, plain_times, waits = [], [], []
    for repeat in range(args.repeats):
        seconds, wait = project_pass(spec, initial, ours, num_classes)
        project_times.append(seconds)
        waits.append(wait)
        plain_times.append(plain_pass(copy.deepcopy(plain_model), plain, spec.lr))
        print(f"pass {repeat + 1}: project {images / seconds:.2f} img/s, plain {images / plain_times[-1]:.2f} img/s",
              file=sys.stderr)
    fast, slow = images / min(project_times), images / min(plain_times)
    print(f"\ntemplate {args.template} ({spec.backbone}, {spec.input_size} px, batch {spec.batch_size}), "
          f"{images} demo Pets images per pass, {torch.get_num_threads()} CPU threads, best of {args.repeats}\n")
    print("| loop | images/s | data-wait share of step time |")
    print("|---|---:|---:|")
    print(f"| project (`train_one_epoch`) | {fast:.2f} | {min(waits):.1%} |")
    print(f"| plain torchvision loop | {slow:.2f} | - |")
    print(f"\nproject / plain: {fast / slow:.2f}x")


if __name__ == "__main__":
    main()
