"""Fine-tuning loop of the torchvision engine: data from a prepared COCO split, SGD with linear warm-up
and a cosine or constant schedule, validation segm mAP after each epoch, the best epoch kept.
"""

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

from pipelines import inference
from pipelines.engines import torch_predictor
from pipelines.evaluation import coco_metrics
from pipelines.models.maskrcnn import InferenceGraph, build_model


class CocoInstances(torch.utils.data.Dataset):
    """Images of one prepared split, letterboxed like at inference, with their instance targets.

    Crowd regions are not training targets. With `flip`, half of the images are mirrored, masks and
    boxes with them.
    """

    def __init__(self, split_json: Path, spec: inference.InputSpec, flip: bool):
        coco = json.loads(Path(split_json).read_text())
        self.root, self.spec, self.flip = Path(split_json).parent, spec, flip
        self.images = coco["images"]
        self.annotations = {image["id"]: [] for image in self.images}
        for ann in coco["annotations"]:
            if not ann["iscrowd"]:
                self.annotations[ann["image_id"]].append(ann)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        info = self.images[index]
        pixels = inference.load_image(self.root / info["file_name"])
        batch, scale = inference.preprocess(pixels, self.spec)
        new_h, new_w, _ = inference.letterbox_size(info["height"], info["width"], self.spec.size)
        anns = self.annotations[info["id"]]
        masks = np.zeros((len(anns), self.spec.size, self.spec.size), dtype=np.uint8)
        for i, ann in enumerate(anns):
            full = Image.fromarray(mask_utils.decode(ann["segmentation"]))
            masks[i, :new_h, :new_w] = np.asarray(full.resize((new_w, new_h), Image.NEAREST))
        boxes = np.array([ann["bbox"] for ann in anns], dtype=np.float32).reshape(-1, 4) * scale
        boxes[:, 2:] += boxes[:, :2]
        image = torch.from_numpy(batch[0])
        if self.flip and random.random() < 0.5:
            image, masks = image.flip(-1), masks[:, :, ::-1].copy()
            boxes[:, [0, 2]] = self.spec.size - boxes[:, [2, 0]]
        # A mask shrunk below a pixel by the resize leaves no box: drop such objects.
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        target = {"boxes": torch.from_numpy(boxes[keep]),
                  "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)[torch.from_numpy(keep)],
                  "masks": torch.from_numpy(masks[keep])}
        return image, target


def collate(batch):
    return tuple(zip(*batch))


def lr_factor(iteration: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0 or constant."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (iteration - warmup) / max(1, total - warmup)))
    raise ValueError(f"unknown schedule {schedule!r}; expected cosine or constant")


def train_one_epoch(model, loader, optimizer, scheduler, epoch: int, grad_clip: float, log) -> dict:
    """One pass over `loader`; returns the mean of each loss."""
    model.train()
    sums, start = {}, time.monotonic()
    for step, (images, targets) in enumerate(loader, 1):
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {step}: lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        if step % 10 == 0 or step == len(loader):
            per_step = (time.monotonic() - start) / step
            log(f"  epoch {epoch} step {step}/{len(loader)} loss {loss.item():.3f} "
                f"lr {optimizer.param_groups[0]['lr']:.4g} ({per_step:.2f} s/step, epoch ETA {per_step * (len(loader) - step):.0f} s)")
    return {name: total / len(loader) for name, total in sums.items()}


def fit(spec, data_dir: Path, out_dir: Path, log=print) -> dict:
    """Trains template `spec` on the prepared dataset in `data_dir`; writes `<out_dir>/model.pt`.

    The saved checkpoint is the epoch with the best validation segm mAP. Returns the per-epoch history.
    """
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    labels = [c["name"] for c in json.loads((data_dir / "train.json").read_text())["categories"]]
    input_spec = inference.InputSpec(size=spec.input_size)
    model = build_model(spec, len(labels))
    loader = torch.utils.data.DataLoader(
        CocoInstances(data_dir / "train.json", input_spec, flip=True), batch_size=spec.batch_size, shuffle=True,
        num_workers=spec.num_workers, collate_fn=collate, generator=torch.Generator().manual_seed(spec.seed))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=spec.lr,
                                momentum=spec.momentum, weight_decay=spec.weight_decay)
    total = spec.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, total, spec.warmup_iters, spec.schedule))
    history, best = [], None
    out_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, spec.epochs + 1):
        start = time.monotonic()
        losses = train_one_epoch(model, loader, optimizer, scheduler, epoch, spec.grad_clip, log)
        model.eval()
        results = inference.predict_split(torch_predictor(InferenceGraph(model)), data_dir / "val.json", input_spec,
                                          spec.score_threshold)
        val = coco_metrics(data_dir / "val.json", results)
        history.append({"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **losses,
                        "val_segm_map": val["segm_map"], "val_bbox_map": val["bbox_map"],
                        "seconds": round(time.monotonic() - start, 1)})
        log(f"epoch {epoch}/{spec.epochs}: loss {sum(losses.values()):.3f}, val segm mAP {val['segm_map']:.1f}, "
            f"bbox mAP {val['bbox_map']:.1f} ({history[-1]['seconds']} s)")
        if best is None or val["segm_map"] > best:
            best = val["segm_map"]
            torch.save({"model": model.state_dict(), "template": asdict(spec), "labels": labels, "epoch": epoch},
                       out_dir / "model.pt")
    return {"history": history, "best_epoch": max(history, key=lambda h: h["val_segm_map"])["epoch"],
            "best_val_segm_map": best}
