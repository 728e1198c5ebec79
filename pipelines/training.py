"""The fine-tuning loop every engine shares; an engine supplies its models through a `ModelAdapter`.

Data from a prepared COCO split (flip and multiscale, masks moved with boxes); SGD or AdamW with the
learning rate scaled to the batch; linear warm-up then cosine, constant or plateau (on validation segm
mAP); optional EMA of the weights; gradient clipping; AMP on CUDA; validation segm mAP after every
epoch, early stopping, and the best epoch kept. Each finished epoch is saved to `<out_dir>/resume.pt`
so that a killed run continues from there; runs under `torchrun` train data-parallel (DDP).
Nothing here knows a model library: building a model, computing its losses on a batch and wrapping it
into an inference graph are the adapter's.
"""

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.distributed as dist
from PIL import Image
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from pipelines import cells, checkpoints, confidence, devices, inference, tiling
from pipelines.engines.contract import ModelAdapter, TrainResult
from pipelines.evaluation import coco_metrics
from pipelines.files import write_atomic
from pipelines.splits import TRAIN, VAL, split_file

# Every epoch's validation segm mAP comes with its bootstrap replicates over the validation images, so that
# templates can be compared at any epoch with the report's paired intervals (pipelines.racing). The count and
# seed are fixed, the same for every cell: two cells of a dataset are scored on the same resamples (paired), and
# no report setting reruns a training.
VALIDATION_RESAMPLES = 500
VALIDATION_SEED = 0


class CocoInstances(torch.utils.data.Dataset):
    """Images of one prepared split, resized and padded like at inference, with their instance targets.

    Crowd regions are not training targets. With `flip`, half of the images are mirrored; with a
    `scale_range` below 1, the image fills a random share of the input size (multiscale). Masks and boxes
    move with the pixels. With `tiles`, every image is a sample and so is each of its tiles that holds an
    object (by its box; pipelines.tiling.crop_objects then crops the targets).
    """

    def __init__(self, split_json: Path, spec: inference.InputSpec, flip: bool, scale_range=(1.0, 1.0),
                 tiles: tiling.Tiling | None = None):
        coco = json.loads(Path(split_json).read_text())
        self.root, self.spec, self.flip, self.scale_range = Path(split_json).parent, spec, flip, tuple(scale_range)
        self.images, self.tiles = coco["images"], tiles
        self.annotations = {image["id"]: [] for image in self.images}
        for ann in coco["annotations"]:
            if not ann["iscrowd"]:
                self.annotations[ann["image_id"]].append(ann)
        self.samples = [(i, None) for i in range(len(self.images))]
        if tiles:
            for i, info in enumerate(self.images):
                self.samples += [(i, box) for box in tiling.tiles(info["width"], info["height"], tiles)
                                 if tiling.crop_objects([{"bbox": a["bbox"]} for a in self.annotations[info["id"]]],
                                                        info["height"], info["width"], box, tiles.min_share)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        image_index, box = self.samples[index]
        info = self.images[image_index]
        pixels = inference.load_image(self.root / info["file_name"])
        anns = self.annotations[info["id"]]
        if box is not None:
            anns = tiling.crop_objects(anns, *pixels.shape[:2], box, self.tiles.min_share)
            pixels = pixels[box[1]:box[3], box[0]:box[2]]
        fill = random.uniform(*self.scale_range) if self.scale_range != (1.0, 1.0) else 1.0
        batch, _ = inference.preprocess(pixels, self.spec, fill)
        place = inference.placement(*pixels.shape[:2], self.spec, fill)
        (new_h, new_w), (canvas_h, canvas_w), (scale_x, scale_y) = place.resized, place.canvas, place.scale
        masks = np.zeros((len(anns), canvas_h, canvas_w), dtype=np.uint8)
        for i, ann in enumerate(anns):
            full = Image.fromarray(mask_utils.decode(ann["segmentation"]))
            masks[i, :new_h, :new_w] = np.asarray(full.resize((new_w, new_h), Image.NEAREST))
        boxes = np.array([ann["bbox"] for ann in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes *= np.asarray([scale_x, scale_y, scale_x, scale_y], np.float32)
        image = torch.from_numpy(batch[0])
        if self.flip and random.random() < 0.5:
            image, masks = image.flip(-1), masks[:, :, ::-1].copy()
            boxes[:, [0, 2]] = canvas_w - boxes[:, [2, 0]]
        # A mask shrunk below a pixel by the resize leaves no box: drop such objects.
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        target = {"boxes": torch.from_numpy(boxes[keep]),
                  "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)[torch.from_numpy(keep)],
                  "masks": torch.from_numpy(masks[keep])}
        return image, target


def collate(batch):
    """Images (and their masks) padded at the bottom and right to the batch's largest canvas: a `[B, 3, H, W]`
    tensor and a list of targets. Letterboxed canvases are all the same size; keep_ratio's vary."""
    images, targets = zip(*batch)
    height, width = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
    padded = images[0].new_zeros(len(images), 3, height, width)
    for slot, image in zip(padded, images):
        slot[:, :image.shape[1], :image.shape[2]] = image
    targets = [{**t, "masks": torch.nn.functional.pad(t["masks"], (0, width - t["masks"].shape[2],
                                                                   0, height - t["masks"].shape[1]))}
               for t in targets]
    return padded, targets


def lr_factor(iteration: int, total: int, warmup: int, schedule: str, warmup_ratio: float = 0.0,
              min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate: linear warm-up from `warmup_ratio`, then cosine decay to
    `min_ratio`, or constant (`plateau` is constant here; ReduceLROnPlateau lowers it between epochs)."""
    if iteration < warmup:
        return warmup_ratio + (1 - warmup_ratio) * (iteration + 1) / warmup
    if schedule in ("constant", "plateau"):
        return 1.0
    if schedule == "cosine":
        progress = (iteration - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; expected cosine, constant or plateau")


def scaled_lr(spec, world_size: int) -> float:
    """The recipe's lr is for a total batch of `lr_batch_size` images (0: the template's batch on one
    process); other total batches scale it linearly."""
    reference = spec.lr_batch_size or spec.batch_size
    return spec.lr * spec.batch_size * world_size / reference


def make_optimizer(spec, params, lr: float):
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}; expected sgd or adamw")


def mixed_precision(spec, device) -> torch.dtype | None:
    """The autocast type of a template with `amp: true`: bfloat16 where the GPU has it (no loss scaling
    needed), else float16 with a GradScaler; None (full precision) with `amp: false` or on a CPU."""
    if not spec.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Training:
    """What a training run changes as it goes, saved and restored as one: model, optimizer, schedules,
    EMA, loss scale, random states, history and the best epoch so far."""

    def __init__(self, spec, adapter: ModelAdapter, num_classes: int, loader_generator: torch.Generator,
                 world_size: int, device):
        self.spec, self.adapter, self.generator, self.device = spec, adapter, loader_generator, device
        # Channels-last memory: oneDNN's (and cuDNN's) faster convolution layout; 15-25% shorter CPU training
        # steps for both engines' default templates (docs/measurements.md). Values are the same, only the layout.
        self.model = adapter.build(spec, num_classes).to(device, memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(spec, params, scaled_lr(spec, world_size))
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(spec.ema_decay), use_buffers=True) \
            if spec.ema_decay > 0 else None
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=spec.plateau_factor, patience=spec.plateau_patience) \
            if spec.schedule == "plateau" else None
        self.amp_dtype = mixed_precision(spec, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.history, self.best, self.best_state, self.epoch = [], None, None, 0
        self.step_model = self.model  # what the training steps call: the model, or its DDP wrapper

    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and kept: the EMA's where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "plateau": self.plateau.state_dict() if self.plateau else None,
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "random": random.getstate(), "torch_random": torch.get_rng_state(),
                "cuda_random": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "loader_random": self.generator.get_state(), "history": self.history, "best": self.best,
                "best_state": self.best_state, "epoch": self.epoch}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.plateau:
            self.plateau.load_state_dict(state["plateau"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        random.setstate(state["random"])
        torch.set_rng_state(state["torch_random"])
        if self.device.type == "cuda" and state.get("cuda_random"):
            torch.cuda.set_rng_state_all(state["cuda_random"])
        self.generator.set_state(state["loader_random"])
        self.history, self.best, self.best_state, self.epoch = (
            state["history"], state["best"], state["best_state"], state["epoch"])


def train_one_epoch(training: Training, loader, step_lr, epoch: int, show_progress: bool) -> dict:
    """One pass over `loader`; returns the mean of each loss, the share of time spent waiting for data and
    this process's images per second."""
    model, optimizer, spec, scaler = training.step_model, training.optimizer, training.spec, training.scaler
    model.train()
    sums, waited, seen, start = {}, 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}/{spec.epochs}", unit="step", disable=not show_progress, mininterval=2)
    ready = time.perf_counter()
    for step, (images, targets) in enumerate(bar, 1):
        waited += time.perf_counter() - ready
        seen += len(images)
        images = images.to(training.device, memory_format=torch.channels_last)
        targets = [{k: v.to(training.device) for k, v in t.items()} for t in targets]
        with torch.autocast(training.device.type, dtype=training.amp_dtype, enabled=training.amp_dtype is not None):
            losses = training.adapter.losses(model, images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {step}")
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        scaler.step(optimizer) if scaler is not None else optimizer.step()
        if scaler is not None:
            scaler.update()
        step_lr()
        if training.ema is not None:
            training.ema.update_parameters(model)
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}", refresh=False)
        ready = time.perf_counter()
    seconds = time.perf_counter() - start
    return {**{name: total / len(loader) for name, total in sums.items()},
            "data_wait_share": round(waited / seconds, 4), "images_per_second": round(seen / seconds, 2)}


def fingerprint(spec, seed: int, data_dir: Path) -> str:
    """What a saved run must match to be resumed: the recipe, the seed and the training and validation data."""
    digest = hashlib.sha256(json.dumps({**asdict(spec), "seed": seed}, sort_keys=True).encode())
    for role in (TRAIN, VAL):
        digest.update(split_file(data_dir, role).read_bytes())
    return digest.hexdigest()


def _load_resume(path: Path, expected: str, log):
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != expected:
        log(f"{path} belongs to another recipe or data: training from the start")
        return None
    return state


def _device(log=print):
    """The CPU, or the GPU this process claims (pipelines.devices): under torchrun the one it was given."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    gpus = [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
    local_rank = os.environ.get("LOCAL_RANK")
    index = devices.claim(gpus, int(local_rank) if local_rank is not None else None, devices.cells_per_gpu(),
                          log=log)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _loader(spec, seed: int, data_dir: Path, world: int, rank: int):
    """The training split's loader (each process its share under DDP), its sampler and its random generator."""
    tiles = tiling.Tiling(spec.tiling["size"], spec.tiling.get("overlap", 0.0), spec.tiling.get("min_share", 0.5)) \
        if spec.tiling else None
    dataset = CocoInstances(split_file(data_dir, TRAIN), inference.template_input(spec), flip=True,
                            scale_range=spec.scale_range, tiles=tiles)
    if spec.dataset_repeats > 1:  # an epoch passes over the training images this many times
        dataset = torch.utils.data.ConcatDataset([dataset] * spec.dataset_repeats)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True, seed=seed) \
        if world > 1 else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=spec.batch_size, shuffle=sampler is None,
                                         sampler=sampler, num_workers=spec.num_workers, collate_fn=collate,
                                         generator=generator, persistent_workers=spec.num_workers > 0)
    return loader, sampler, generator


def resolve_tiling(spec, data_dir: Path, log=print):
    """`spec` with `tiling: auto` decided from its training split's objects (pipelines.tiling.auto): sizes, or
    none. The trained model keeps the decided values, so evaluation, export and the IR tile the same way."""
    if spec.tiling != "auto":
        return spec
    coco = json.loads(split_file(data_dir, TRAIN).read_text())
    objects = [a for a in coco["annotations"] if not a["iscrowd"]]
    found = tiling.auto([a["area"] for a in objects], [max(a["bbox"][2:]) for a in objects],
                        [min(i["width"], i["height"]) for i in coco["images"]])
    log("tiling auto: " + ("none (the objects are large for their images)" if found is None else
                           f"tiles of {found.size} px overlapping by {found.overlap:.0%}"))
    return replace(spec, tiling=None if found is None else
                   {"size": found.size, "overlap": found.overlap, "min_share": found.min_share})


def fit(spec, adapter: ModelAdapter, data_dir: Path, out_dir: Path, *, seed: int, log=print,
        on_epoch=lambda record: None, until_epoch: int | None = None) -> TrainResult:
    """Trains template `spec`, whose models `adapter` builds, on the prepared dataset in `data_dir` with training
    seed `seed` (the cell's: it seeds the weights' start, the augmentation and the batches' order); writes
    `<out_dir>/model.pt`.

    The saved checkpoint holds the epoch with the best validation segm mAP. A `resume.pt` left by a
    killed run with the same recipe and data is continued from. `until_epoch` (a race's rung) stops after that
    epoch with resume.pt kept and no model.pt: a later call continues exactly as an uninterrupted run would.
    Under `torchrun` (WORLD_SIZE > 1) each process trains on its share of the images (DDP); process 0
    validates, logs and saves. `on_epoch` receives every epoch's record (restored ones first) in process 0 only.
    """
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    spec = resolve_tiling(spec, data_dir, log if rank == 0 else lambda message: None)
    device = _device(log)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    random.seed(seed + rank)
    torch.manual_seed(seed)
    labels = [c["name"] for c in json.loads(split_file(data_dir, TRAIN).read_text())["categories"]]
    loader, sampler, generator = _loader(spec, seed, data_dir, world, rank)
    training = Training(spec, adapter, len(labels), generator, world, device)
    if rank == 0:
        precision = f"mixed precision ({str(training.amp_dtype)[6:]})" if training.amp_dtype else "full precision"
        log(f"training on {device} in {precision}" + (f", {world} processes (DDP)" if world > 1 else ""))
    total = spec.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        training.optimizer, lambda i: lr_factor(i, total, spec.warmup_iters, spec.schedule, spec.warmup_ratio,
                                                spec.min_lr_ratio))
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_file, key = out_dir / cells.RESUME_FILE, fingerprint(spec, seed, data_dir)
    _resume(training, scheduler, _load_resume(resume_file, key, log), resume_file, rank, log, on_epoch)
    if world > 1:
        training.step_model = torch.nn.parallel.DistributedDataParallel(training.model)

    def step_lr():
        # Per iteration: warm-up, then cosine or constant. A plateau schedule leaves the lr to
        # ReduceLROnPlateau after warm-up (LambdaLR would undo its reductions).
        if spec.schedule != "plateau" or scheduler.last_epoch < spec.warmup_iters:
            scheduler.step()
    last = spec.epochs if until_epoch is None else min(until_epoch, spec.epochs)
    while training.epoch < last and not _stop_early(training.history, spec.early_stop_patience):
        if sampler is not None:
            sampler.set_epoch(training.epoch + 1)
        record = _epoch(training, loader, step_lr, data_dir, world, rank, resume_file)
        if rank == 0:
            # Whole or not at all: a kill while saving leaves the previous epoch's file.
            state = {"fingerprint": key, "training": training.state(), "scheduler": scheduler.state_dict()}
            write_atomic(resume_file, lambda staged: torch.save(state, staged))
            on_epoch(record)
            log(_epoch_line(record, spec.epochs))
    best_epoch = max(training.history, key=lambda h: h["val_segm_map"])["epoch"]
    if training.epoch < spec.epochs and not _stop_early(training.history, spec.early_stop_patience):
        return TrainResult(training.history, best_epoch, training.best)  # at a rung: resume.pt goes on from here
    if rank == 0:
        checkpoints.save(out_dir / cells.MODEL_FILE, training.best_state, spec, labels, best_epoch)
        resume_file.unlink()
    if world > 1:
        dist.barrier()
    return TrainResult(training.history, best_epoch, training.best)


def _epoch_line(record: dict, epochs: int) -> str:
    loss = sum(v for k, v in record.items() if k.startswith("loss"))
    return (f"epoch {record['epoch']}/{epochs}: loss {loss:.3f}, val segm mAP {record['val_segm_map']:.1f}, "
            f"bbox mAP {record['val_bbox_map']:.1f} ({record['seconds']} s, training {record['images_per_second']} "
            "images/s)")


def _resume(training: Training, scheduler, saved: dict | None, resume_file: Path, rank: int, log, on_epoch) -> None:
    """Continues a killed run from its saved state, replaying its epochs' records to `on_epoch`."""
    if not saved:
        return
    training.restore(saved["training"])
    scheduler.load_state_dict(saved["scheduler"])
    if rank == 0:
        log(f"resuming from {resume_file}: epoch {training.epoch} of {training.spec.epochs} done")
        for record in training.history:
            on_epoch(record)


def _epoch(training: Training, loader, step_lr, data_dir: Path, world: int, rank: int, resume_file: Path) -> dict:
    """One epoch: training, validation, the best weights so far, the plateau schedule; returns its record."""
    spec, epoch, start = training.spec, training.epoch + 1, time.monotonic()
    try:
        losses = train_one_epoch(training, loader, step_lr, epoch, show_progress=rank == 0)
        losses["images_per_second"] *= world  # every process trains on its own share at about the same pace
    except FloatingPointError as error:
        last = f"{resume_file} (epoch {training.epoch})" if training.epoch else "none: it was the first epoch"
        raise FloatingPointError(f"{error}; lower the learning rate. Last good checkpoint: {last}") from None
    except torch.OutOfMemoryError:
        raise MemoryError(f"out of memory training this template: lower its batch_size ({spec.batch_size}) "
                          f"or input_size ({spec.input_size}) in params.yaml") from None
    val = _validate(training, data_dir, world, rank)
    training.epoch = epoch
    record = {"epoch": epoch, "lr": training.optimizer.param_groups[0]["lr"], **losses,
              "val_segm_map": val["segm_map"], "val_bbox_map": val["bbox_map"],
              "val_segm_replicates": val["segm_replicates"], "seconds": round(time.monotonic() - start, 1)}
    training.history.append(record)
    if training.best is None or val["segm_map"] > training.best:
        training.best = val["segm_map"]
        training.best_state = {k: v.detach().cpu().clone() for k, v in training.evaluated().state_dict().items()}
    if training.plateau:
        training.plateau.step(val["segm_map"])
    return record


def _stop_early(history: list, patience: int) -> bool:
    """True when validation segm mAP has not improved for `patience` epochs (0: never stop early)."""
    if patience <= 0 or len(history) <= patience:
        return False
    best_before = max(h["val_segm_map"] for h in history[:-patience])
    return all(h["val_segm_map"] <= best_before for h in history[-patience:])


def _validate(training: Training, data_dir: Path, world: int, rank: int) -> dict:
    """Validation segm/bbox mAP and the segm mAP's bootstrap replicates, computed by process 0 and shared with
    the others."""
    val = None
    if rank == 0:
        # The graph sets eval mode; the next epoch sets train mode again.
        graph = training.adapter.inference_graph(training.evaluated(), training.spec)
        split = split_file(data_dir, VAL)
        results = inference.predict_split(checkpoints.torch_predictor(graph, training.device), split,
                                          inference.template_input(training.spec), training.spec.score_threshold)
        val = coco_metrics(split, results)
        _, replicates = confidence.intervals({"segm_map": confidence.match(split, results, "segm")},
                                             VALIDATION_RESAMPLES, VALIDATION_SEED)
        val["segm_replicates"] = replicates["segm_map"]
    if world > 1:
        shared = [val]
        dist.broadcast_object_list(shared, src=0)
        val = shared[0]
    return val
