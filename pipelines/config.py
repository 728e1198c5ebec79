"""Typed views of `params.yaml`: each stage reads the file once into these and passes plain values on."""

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import yaml

from pipelines.engines import ENGINES
from pipelines.precisions import PRECISIONS

PARAMS_FILE = Path("params.yaml")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset and split it (`datasets.<key>` in params.yaml)."""
    format: str                    # a Datumaro format name, ours (cityscapes_instances, oxford_pets, wgisd) or built in
    path: str                      # folder under `data_dir` holding the dataset as its owner ships it
    subsets: dict                  # the format's subset name -> benchmark role (train, val or test); others are dropped
    options: dict = field(default_factory=dict)  # passed to the format's importer
    subsample: float = 1.0         # keep this fraction of the training images (stratified, seeded)
    val_ratio: float = 0.2         # share of the training images carved out for validation when no subset is `val`
    test_ratio: float = 0.2        # share held out for testing when no subset is `test`
    seed: int = 0


@dataclass(frozen=True)
class TemplateSpec:
    """One model template and its training recipe (`templates.<key>` in params.yaml).

    The keys here are every engine's; `model` holds the architecture keys of the template's engine, which
    that engine declares (with their defaults) and checks: see `engine_options`.
    """
    engine: str                    # which training engine builds and trains it (see pipelines/engines)
    input_size: int                # the size images are resized to, the way `resize_mode` says
    epochs: int
    batch_size: int
    lr: float
    model: dict = field(default_factory=dict)  # the engine's architecture keys
    pretrained: str = "none"       # none, or what the engine accepts (a checkpoint path, imagenet, coco, a URL...)
    mean: list = (123.675, 116.28, 103.53)  # input normalisation, per channel in `channels` order, 0..255 pixels
    std: list = (58.395, 57.12, 57.375)
    channels: str = "RGB"          # RGB | BGR: the channel order the model takes
    resize_mode: str = "letterbox" # letterbox | keep_ratio | stretch: see pipelines/inference.py
    size_divisor: int = 32         # keep_ratio, stretch: input sides padded to a multiple of this
    momentum: float = 0.9
    weight_decay: float = 0.0001
    warmup_iters: int = 0          # linear warm-up over this many iterations...
    warmup_ratio: float = 0.0      # ... from this share of lr
    min_lr_ratio: float = 0.0      # cosine: the lr it ends at, as a share of lr
    schedule: str = "cosine"       # cosine | constant | plateau (ReduceLROnPlateau on val segm mAP)
    grad_clip: float = 0.0         # max gradient norm; 0 turns clipping off
    num_workers: int = 0           # DataLoader worker processes
    optimizer: str = "sgd"         # sgd | adamw (momentum is SGD's only)
    lr_batch_size: int = 0         # the total batch `lr` is meant for; other totals scale it linearly (0: batch_size)
    plateau_patience: int = 2      # schedule plateau: epochs without a better val segm mAP before the lr drops
    plateau_factor: float = 0.1    # ... and by how much
    ema_decay: float = 0.0         # EMA of the weights (validated and kept instead of the raw ones); 0: off
    early_stop_patience: int = 0   # stop after this many epochs without a better val segm mAP; 0: never
    scale_range: list = (1.0, 1.0) # multiscale: the image is resized to a random share of input_size in this range
    dataset_repeats: int = 1       # an epoch passes over the training images this many times
    amp: bool = True               # mixed precision on CUDA (ignored on CPU)
    score_threshold: float = 0.05  # keep detections above this score; low so mAP sees the whole PR curve
    seed: int = 0                  # not in params.yaml: the train stage sets it from `run.seeds`


def engine_options(cls, spec: TemplateSpec, allowed=None):
    """The engine's architecture keys of template `spec` as the engine's dataclass `cls` (whose field defaults
    are the defaults); `allowed` narrows the keys an architecture uses. An unknown key is an error naming it."""
    names = [f.name for f in fields(cls)] if allowed is None else list(allowed)
    unknown = sorted(set(spec.model) - set(names))
    if unknown:
        raise ValueError(f"{PARAMS_FILE}: a template of engine {spec.engine!r} has model keys {unknown} it does not "
                         f"use{'' if allowed is None else ' with this architecture'}; it takes {names}")
    return cls(**spec.model)


@dataclass(frozen=True)
class Params:
    """Fields are named like the params.yaml keys they hold, but for the two in YAML_KEYS."""
    data_dir: str
    datasets: dict                 # key -> DatasetSpec
    templates: dict                # key -> TemplateSpec
    run_templates: list            # every selected template: run.templates' lists, engine by engine
    run_seeds: list                # every training is repeated once per seed; reports show mean +- std
    demo: dict
    export: dict                   # precisions: IRs to write and validate; calibration_images: for INT8
    speed: dict                    # warmup, repeats (latency), throughput_seconds
    confidence: dict               # resamples, seed: the bootstrap over test images (pipelines/confidence.py)
    deploy: dict                   # precision, latency_budget_ms, timing: where the recommendation is for


# Params fields whose params.yaml key differs from their name (what dvc.yaml's `params` lists).
YAML_KEYS = {"run_templates": "run.templates", "run_seeds": "run.seeds"}


def _build(cls, key: str, values: dict, path=PARAMS_FILE):
    unknown = set(values) - {f.name for f in fields(cls)}
    missing = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING} - set(values)
    if unknown or missing:
        raise ValueError(f"{path}: {key}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    return cls(**values)


def selected_templates(selection, templates: dict, path) -> list:
    """The templates `run.templates` selects: it maps every engine to a list of its templates (dvc.yaml runs
    one stage family per engine over its list)."""
    if not isinstance(selection, dict) or set(selection) != set(ENGINES):
        raise ValueError(f"{path}: run.templates maps every engine ({', '.join(ENGINES)}) to the templates it runs, "
                         f"[] for none, e.g. `mmdet: [mmdet_lite0]`; it is {selection!r}")
    found = []
    for engine, names in selection.items():
        for name in names or []:
            if name not in templates:
                raise ValueError(f"{path}: run.templates.{engine} names {name!r}, which templates does not define")
            if templates[name].engine != engine:
                raise ValueError(f"{path}: run.templates.{engine} names {name!r}, a template of engine "
                                 f"{templates[name].engine!r}: list it under run.templates.{templates[name].engine}")
            found.append(name)
    return found


def load_params(path: Path = PARAMS_FILE) -> Params:
    raw = yaml.safe_load(Path(path).read_text())
    seeded = [k for k, v in raw["templates"].items() if "seed" in v]
    if seeded:
        raise ValueError(f"{path}: templates {seeded} set `seed`; training seeds come from `run.seeds`")
    templates = {k: _build(TemplateSpec, f"templates.{k}", v, path) for k, v in raw["templates"].items()}
    selected = selected_templates(raw["run"]["templates"], templates, path)
    precisions = raw["export"]["precisions"]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or "fp32" not in precisions:
        raise ValueError(f"{path}: export.precisions is {precisions}: it must list fp32 (the other IRs are derived "
                         f"from it) and nothing but {list(PRECISIONS)}")
    deploy = {"latency_budget_ms": None, **raw["deploy"]}
    if deploy["precision"] not in precisions:
        raise ValueError(f"{path}: deploy.precision is {deploy['precision']!r}: it must be one of export.precisions "
                         f"{precisions}, the IRs that are exported and validated")
    budget = deploy.get("latency_budget_ms")
    if budget is not None and not (isinstance(budget, (int, float)) and budget > 0):
        raise ValueError(f"{path}: deploy.latency_budget_ms is {budget!r}: a positive number of milliseconds, or null")
    if not (isinstance(deploy["timing"]["rounds"], int) and deploy["timing"]["rounds"] >= 6):
        raise ValueError(f"{path}: deploy.timing.rounds is {deploy['timing']['rounds']!r}: at least 6, the fewest "
                         "rounds that give a speed ratio a 95% interval")
    return Params(
        data_dir=raw["data_dir"],
        datasets={k: _build(DatasetSpec, f"datasets.{k}", v, path) for k, v in raw["datasets"].items()},
        templates=templates,
        run_templates=selected,
        run_seeds=list(raw["run"].get("seeds", [0])),
        demo=raw.get("demo", {}),
        export=raw["export"],
        speed=raw["speed"],
        confidence={"resamples": int(raw["confidence"]["resamples"]), "seed": int(raw["confidence"]["seed"])},
        deploy=deploy,
    )
