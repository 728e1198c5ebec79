"""Training throughput of the project's loop against each engine's own way of training: same model, data, batch.

    python -m benchmarks.training [--templates tiny mmdet_r18] [--images 64] [--repeats 2]

Prepares the demo Pets data (`prepare`, as the pipeline does), then trains each template on the same
images with the same batch size, from the same initial weights:

- project: `pipelines.training.train_one_epoch` over `CocoInstances` (resized as the template says, flip, masks
  with boxes, warm-up schedule, gradient clipping), which also measures how much of the step time is
  spent waiting for the next batch;
- for a torchvision template, plain: the loop of torchvision's detection references written out here,
  images as tensors at their own size, targets with full-size masks, the model's own transform resizing
  and normalising;
- for an mmdet template, mmengine's Runner training the same detector for one epoch (SGD, the same
  gradient clipping) on the same batches, timed from its first to its last iteration by a hook.

It prints images per second of each (best and median of `--repeats` passes, which alternate which loop
goes first), their ratios, and the project's data-wait share.
"""

import argparse
import json
import statistics
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

from pipelines import engines, inference, training
from pipelines.config import DatasetSpec, load_params
from pipelines.datasets import demo
from pipelines.datasets.prepare import prepare
from pipelines.splits import TRAIN, split_file


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


def runner_pass(spec, initial: dict, split: Path, num_classes: int, work: Path) -> float:
    """One epoch of mmengine's Runner on the project's batches; returns the seconds from the start of its
    epoch (before the first batch is loaded, as the project's pass is timed) to its end; the Runner's
    set-up is left out."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from pipelines.engines.mmdet.model import data_samples

    class Clock(Hook):
        def before_train_epoch(self, runner):
            self.start = time.perf_counter()

        def after_train_epoch(self, runner):
            self.seconds = time.perf_counter() - self.start

    def collate(batch):
        images, targets = training.collate(batch)
        return {"inputs": images, "data_samples": data_samples(images, targets)}

    model = engines.adapter("mmdet").build(spec, num_classes)
    model.load_state_dict(initial)
    model.init_weights = lambda: None  # the Runner initialises weights at the start: keep the shared ones
    loader = torch.utils.data.DataLoader(
        training.CocoInstances(split, inference.template_input(spec), flip=True), batch_size=spec.batch_size,
        shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0), num_workers=spec.num_workers)
    clock = Clock()
    runner = Runner(model=model, work_dir=str(work / "runner"), train_dataloader=loader,
                    train_cfg=dict(by_epoch=True, max_epochs=1),
                    optim_wrapper=dict(optimizer=dict(type="SGD", lr=spec.lr, momentum=spec.momentum,
                                                      weight_decay=spec.weight_decay),
                                       clip_grad=dict(max_norm=spec.grad_clip) if spec.grad_clip else None),
                    default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=1000)),
                    custom_hooks=[clock], log_level="WARNING", default_scope="mmdet")
    runner.train()
    return clock.seconds


def project_pass(spec, initial: dict, loader, num_classes: int) -> tuple[float, float]:
    """One pass of `train_one_epoch`; returns seconds and the data-wait share."""
    adapter = engines.adapter(spec.engine)
    run = training.Training(spec, adapter, num_classes, torch.Generator().manual_seed(0), 1, torch.device("cpu"))
    run.model.load_state_dict(initial)
    scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda i: 1.0)
    start = time.perf_counter()
    losses = training.train_one_epoch(run, loader, scheduler.step, 1, show_progress=False)
    return time.perf_counter() - start, losses["data_wait_share"]


def compare(name: str, spec, split: Path, work: Path, repeats: int) -> tuple:
    """Best images/s of the project's loop and of the engine's own trainer, and the data-wait share."""
    num_classes = len(json.loads(split.read_text())["categories"])
    torch.manual_seed(0)
    initial = engines.adapter(spec.engine).build(spec, num_classes).state_dict()
    batch = dict(batch_size=spec.batch_size, shuffle=True, collate_fn=training.collate, num_workers=spec.num_workers)
    ours = torch.utils.data.DataLoader(training.CocoInstances(split, inference.template_input(spec), flip=True),
                                       generator=torch.Generator().manual_seed(0), **batch)
    images = len(ours.dataset)
    project_times, other_times, waits = [], [], []

    def ours_once():
        seconds, wait = project_pass(spec, initial, ours, num_classes)
        project_times.append(seconds)
        waits.append(wait)

    def other_once():
        if spec.engine == "mmdet":
            other_times.append(runner_pass(spec, initial, split, num_classes, work))
        else:
            plain_model = engines.adapter(spec.engine).build(spec, num_classes)
            plain_model.load_state_dict(initial)
            # The references' setup: the model's transform resizes (here to the same input size) and normalises.
            plain_model.transform = GeneralizedRCNNTransform(spec.input_size, spec.input_size,
                                                             (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
            plain = torch.utils.data.DataLoader(PlainCoco(split), generator=torch.Generator().manual_seed(0), **batch)
            other_times.append(plain_pass(plain_model, plain, spec.lr))
    for repeat in range(repeats):  # alternating which goes first, so that neither always runs on a cold process
        for run in (ours_once, other_once) if repeat % 2 == 0 else (other_once, ours_once):
            run()
        print(f"{name} pass {repeat + 1}: project {images / project_times[-1]:.2f} img/s, "
              f"other {images / other_times[-1]:.2f} img/s", file=sys.stderr)
    other = "mmengine Runner" if spec.engine == "mmdet" else "plain torchvision loop"
    rates = [images / t for t in project_times], [images / t for t in other_times]
    return max(rates[0]), max(rates[1]), statistics.median(rates[0]), statistics.median(rates[1]), min(waits), other, \
        images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--templates", nargs="+", default=["tiny", "mmdet_r18"])
    p.add_argument("--images", type=int, default=64, help="training images per pass")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    templates = load_params().templates
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    demo.make_pets(work / "pets", args.images + 16, 8, seed=0)
    pets = DatasetSpec("oxford_pets", "pets", {"trainval": "train", "test": "test"}, val_ratio=16 / (args.images + 16))
    prepare(pets, work / "pets", work / "prepared")
    split = split_file(work / "prepared", TRAIN)
    rows = [(name, templates[name], *compare(name, templates[name], split, work, args.repeats))
            for name in args.templates]
    print(f"\n{rows[0][-1]} demo Pets images per pass, {torch.get_num_threads()} CPU threads, best of {args.repeats}\n")
    print("| template | engine | input, batch | project loop images/s (best, median) | engine's own trainer "
          "| its images/s (best, median) | project / own (best, median) | project data-wait share |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for name, spec, fast, slow, fast_median, slow_median, wait, other, _ in rows:
        print(f"| {name} | {spec.engine} | {spec.input_size} px, {spec.batch_size} | {fast:.2f}, {fast_median:.2f} | "
              f"{other} | {slow:.2f}, {slow_median:.2f} | {fast / slow:.2f}x, {fast_median / slow_median:.2f}x | "
              f"{wait:.1%} |")


if __name__ == "__main__":
    main()
