"""Typed views of `params.yaml`: each stage reads the file once into these and passes plain values on.

`load_params` checks every key's type and range before a stage does any work, and reports every problem at once,
one line each naming the file, the dotted key, its value and what is allowed: a `ParamsError`.
"""

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import yaml

from pipelines import inference
from pipelines.cli import UserError
from pipelines.engines import ENGINES
from pipelines.precisions import PRECISIONS
from pipelines.splits import ROLES

PARAMS_FILE = Path("params.yaml")

# The values TemplateSpec's keys take (pipelines/training.py acts on them; the input's are pipelines/inference.py's).
SCHEDULES = ("cosine", "constant", "plateau")
OPTIMIZERS = ("sgd", "adamw")
# Dataset formats: this project's importers (the keys of pipelines/datasets/prepare.py's PLUGINS) and the
# Datumaro built-ins whose annotations hold instance masks or polygons. Named here rather than read from those
# modules, which load Datumaro: every stage checks params.yaml, most never read a dataset. Tests check both lists
# against prepare.py and Datumaro.
OWN_FORMATS = ("cityscapes_instances", "oxford_pets", "wgisd", "coco_json")
DATUMARO_FORMATS = ("coco", "coco_instances", "mmdet_coco", "roboflow_coco", "cityscapes", "voc",
                    "voc_instance_segmentation", "ade20k2017", "ade20k2020", "mapillary_vistas_instances",
                    "kitti_segmentation", "label_me", "cvat", "open_images", "datumaro", "datumaro_binary")


class ParamsError(UserError, ValueError):
    """Everything wrong with a params file, one line per problem (`problems`)."""

    def __init__(self, problems: list):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
    that engine declares (with their defaults) and checks: see pipelines.engines.contract.engine_options.
    """
    engine: str                    # which training engine builds and trains it (see pipelines/engines)
    input_size: int                # the size images are resized to, the way `resize_mode` says
    epochs: int
    batch_size: int
    lr: float
    model: dict = field(default_factory=dict)  # the engine's architecture keys
    pretrained: str = "none"       # none, or what the engine accepts (a checkpoint path, imagenet, coco, a URL...)
    # The input, with input_size (inference.template_input makes it the model's InputSpec; the defaults are its):
    mean: list = inference.MEAN    # normalisation per channel in `channels` order, on 0..255 pixel values
    std: list = inference.STD
    channels: str = inference.CHANNEL_ORDER     # RGB | BGR: the channel order the model takes
    resize_mode: str = inference.RESIZE_MODE    # letterbox | keep_ratio | stretch: see pipelines/inference.py
    size_divisor: int = inference.SIZE_DIVISOR  # keep_ratio, stretch: input sides padded to a multiple of this
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
    # Small objects in large images (pipelines/tiling.py): null, `auto` (sizes from the training split's objects,
    # decided when training starts) or {size: px, overlap: share, min_share: share}. Training sees the whole
    # images and their tiles; inference every tile and the whole image, merged.
    tiling: object = None


@dataclass(frozen=True)
class Params:
    """Fields are named like the params.yaml keys they hold, but for those in YAML_KEYS."""
    data_dir: str
    datasets: dict                 # key -> DatasetSpec
    templates: dict                # key -> TemplateSpec
    run_templates: list            # every selected template: run.templates' lists, engine by engine
    run_datasets: list             # the datasets benchmarked (run.datasets); every one of `datasets` is prepared
    run_seeds: list                # every training is repeated once per seed; reports show mean +- std
    demo: dict
    export: dict                   # precisions: IRs to write and validate; calibration_images: for INT8
    speed: dict                    # warmup, repeats (latency), throughput_seconds
    confidence: dict               # resamples, seed: the bootstrap over test images (pipelines/confidence.py)
    deploy: dict                   # precision, latency_budget_ms, timing: where the recommendation is for
    race: dict                     # enabled, rung, margin, keep, eta: racing the templates (pipelines/racing.py)


# What a params.yaml without `race` (or without its optional keys) means: no race.
RACE_OFF = {"enabled": False, "rung": 0.5, "margin": 0.0, "keep": [], "eta": 1}

# Params fields whose params.yaml key differs from their name (what dvc.yaml's `params` lists).
YAML_KEYS = {"run_templates": "run.templates", "run_datasets": "run.datasets", "run_seeds": "run.seeds"}



@dataclass(frozen=True)
class Rule:
    """What one key's value must be: `allowed` says it in a message, `holds` tests it."""
    allowed: str
    holds: Callable[[object], bool]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value, count: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == count and all(map(_number, value))


def whole(low: int) -> Rule:
    return Rule(f"a whole number >= {low}", lambda v: _whole(v) and v >= low)


def number(bounds: str, test: Callable[[float], bool]) -> Rule:
    return Rule(f"a number {bounds}", lambda v: _number(v) and test(v))


def one_of(choices) -> Rule:
    return Rule(f"one of {list(choices)}", lambda v: isinstance(v, str) and v in choices)


TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
MAPPING = Rule("a mapping", lambda v: isinstance(v, dict))
POSITIVE = number("> 0", lambda v: v > 0)
NON_NEGATIVE = number(">= 0", lambda v: v >= 0)
FRACTION = number("in [0, 1)", lambda v: 0 <= v < 1)
SHARE = number("in [0, 1]", lambda v: 0 <= v <= 1)

def _tile_sizes(v) -> bool:
    return isinstance(v, dict) and set(v) <= {"size", "overlap", "min_share"} and _whole(v.get("size")) \
        and v["size"] >= 32 and _number(v.get("overlap", 0)) and 0 <= v.get("overlap", 0) <= 0.9 \
        and _number(v.get("min_share", 0.5)) and 0 < v.get("min_share", 0.5) <= 1


TEMPLATE_RULES = {
    "engine": one_of(ENGINES),
    "input_size": whole(1),
    "epochs": whole(1),
    "batch_size": whole(1),
    "lr": POSITIVE,
    "model": MAPPING,  # the engine checks its keys when it builds the model (contract.engine_options)
    "pretrained": TEXT,
    "mean": Rule("3 numbers, one per channel", lambda v: _numbers(v, 3)),
    "std": Rule("3 numbers > 0, one per channel", lambda v: _numbers(v, 3) and min(v) > 0),
    "channels": one_of(inference.CHANNEL_ORDERS),
    "resize_mode": one_of(inference.RESIZE_MODES),
    "size_divisor": whole(1),
    "momentum": FRACTION,
    "weight_decay": NON_NEGATIVE,
    "warmup_iters": whole(0),
    "warmup_ratio": SHARE,
    "min_lr_ratio": SHARE,
    "schedule": one_of(SCHEDULES),
    "grad_clip": NON_NEGATIVE,
    "num_workers": whole(0),
    "optimizer": one_of(OPTIMIZERS),
    "lr_batch_size": whole(0),
    "plateau_patience": whole(0),
    "plateau_factor": number("in (0, 1)", lambda v: 0 < v < 1),
    "ema_decay": FRACTION,
    "early_stop_patience": whole(0),
    "scale_range": Rule("[low, high] with 0 < low <= high", lambda v: _numbers(v, 2) and 0 < v[0] <= v[1]),
    "dataset_repeats": whole(1),
    "amp": Rule("true or false", lambda v: isinstance(v, bool)),
    "score_threshold": FRACTION,
    "tiling": Rule("null, auto, or {size: whole number >= 32, overlap: a share in [0, 0.9], min_share: a share in "
                   "(0, 1]} (size required)",
                   lambda v: v is None or v == "auto" or _tile_sizes(v)),
}
# Keys a template may not hold, and why: a training's seed is its cell's (run.seeds), not its recipe's.
TEMPLATE_REFUSED = {"seed": Rule("not set here: each training runs once per seed of run.seeds", lambda v: False)}
DATASET_RULES = {
    "format": Rule(f"one of this project's formats {list(OWN_FORMATS)} or Datumaro's {list(DATUMARO_FORMATS)}",
                   lambda v: isinstance(v, str) and v in OWN_FORMATS + DATUMARO_FORMATS),
    "path": TEXT,
    "subsets": Rule(f"a mapping of the format's subset names to {', '.join(ROLES)}, at least one to train",
                    lambda v: isinstance(v, dict) and all(r in ROLES for r in v.values()) and "train" in v.values()),
    "options": MAPPING,
    "subsample": number("in (0, 1]", lambda v: 0 < v <= 1),
    "val_ratio": FRACTION,
    "test_ratio": FRACTION,
    "seed": whole(0),
}


@dataclass(frozen=True)
class Section:
    """A mapping of these keys, each holding what its Rule or Section says; `optional` ones may be left out. A name
    of `refused` is no key of it: given, it is refused with its Rule's reason."""
    keys: dict
    optional: tuple = ()
    refused: dict = field(default_factory=dict)

    @property
    def allowed(self) -> str:
        return f"a mapping of the keys {', '.join(self.keys)}"


@dataclass(frozen=True)
class Entries:
    """A mapping of names the user picks (datasets', templates') to entries of one Section."""
    entry: Section
    of: str

    @property
    def allowed(self) -> str:
        return f"a mapping of names to {self.of}"


def spec_section(cls, rules: dict, refused: dict | None = None) -> Section:
    """The keys of dataclass `cls`, checked by `rules`; a key with a default may be left out; `refused`: see Section."""
    return Section(rules, tuple(f.name for f in fields(cls)
                                if f.default is not MISSING or f.default_factory is not MISSING), refused or {})


# run.templates' shape; _selection_problems checks the names against templates
SELECTION = Rule(f"a mapping of every engine ({', '.join(ENGINES)}) to the templates it runs, [] for none, e.g. "
                 "`mmdet: [mmdet_lite0]`",
                 lambda v: isinstance(v, dict) and set(v) == set(ENGINES) and all(
                     names is None or isinstance(names, list) and all(isinstance(n, str) for n in names)
                     for names in v.values()))
DATASET_SELECTION = Rule("a non-empty list of keys of `datasets`, e.g. [cityscapes, pets]",
                         lambda v: isinstance(v, list) and bool(v) and all(isinstance(n, str) for n in v))
SEEDS = Rule("a non-empty list of distinct whole numbers >= 0",
             lambda v: isinstance(v, list) and bool(v) and all(_whole(s) and s >= 0 for s in v)
             and len(set(v)) == len(v))
PRECISION_LIST = Rule(f"it must list fp32 (the other IRs are derived from it) and nothing but {list(PRECISIONS)}, "
                      "each once",
                      lambda v: isinstance(v, list) and "fp32" in v and len(set(map(str, v))) == len(v)
                      and all(isinstance(p, str) and p in PRECISIONS for p in v))

SCHEMA = Section({
    "data_dir": TEXT,
    "run": Section({"templates": SELECTION, "datasets": DATASET_SELECTION, "seeds": SEEDS}, optional=("seeds",)),
    "export": Section({"precisions": PRECISION_LIST, "calibration_images": whole(1)}),
    "deploy": Section({
        "precision": one_of(PRECISIONS),
        "latency_budget_ms": Rule("a positive number of milliseconds, or null",
                                  lambda v: v is None or _number(v) and v > 0),
        "timing": Section({
            "rounds": Rule("at least 6, the fewest rounds that give a speed ratio a 95% interval",
                           lambda v: _whole(v) and v >= 6),
            "images": whole(1),
            "warmup": whole(0),
        }),
    }, optional=("latency_budget_ms",)),
    "speed": Section({"warmup": whole(0), "repeats": whole(1), "throughput_seconds": POSITIVE}),
    "confidence": Section({"resamples": whole(20), "seed": whole(0)}),
    "race": Section({
        "enabled": Rule("true or false", lambda v: isinstance(v, bool)),
        "rung": number("in (0, 1): the share of each template's epochs trained before the verdict",
                       lambda v: 0 < v < 1),
        "margin": NON_NEGATIVE,
        "eta": whole(1),
        "keep": Rule("a list of template names ([] for none)",
                     lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v)),
    }, optional=("margin", "keep", "eta")),
    "demo": Section({"seed": whole(0), "cityscapes": Section({"train": whole(1), "val": whole(1)}),
                     "cityscapes_small": Section({"train": whole(1), "val": whole(1)}),
                     "pets": Section({"trainval": whole(1), "test": whole(1)}),
                     "wgisd": Section({"train": whole(1), "test": whole(1)})}),
    "fetch": Rule("a mapping of folder names to lists of archives, each with a url",  # pipelines/datasets/fetch.py
                  lambda v: isinstance(v, dict) and all(isinstance(archives, list) and all(
                      isinstance(a, dict) and "url" in a for a in archives) for archives in v.values())),
    "datasets": Entries(spec_section(DatasetSpec, DATASET_RULES), "datasets (DatasetSpec's keys)"),
    "templates": Entries(spec_section(TemplateSpec, TEMPLATE_RULES, TEMPLATE_REFUSED),
                         "templates (TemplateSpec's keys)"),
}, optional=("fetch", "race"))


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dotted(key: str, name) -> str:
    return f"{key}.{name}" if key else str(name)


def _unknown(name, known, key: str) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    if close:
        return f"an unknown key; did you mean {_dotted(key, close[0])}?"
    return f"an unknown key; {key or 'params.yaml'} takes {', '.join(known)}"


def _problems(schema, value, key: str = "") -> list:
    """One line per way `value` (at dotted `key`, "" for the whole file) is not what `schema` (a Rule, Section or
    Entries) allows: the key, the value, what is allowed."""
    if isinstance(schema, Rule):
        return [] if schema.holds(value) else [f"{key} is {_shown(value)}: {schema.allowed}"]
    if not isinstance(value, dict):
        return [f"{key} is {_shown(value)}: {schema.allowed}"]
    if isinstance(schema, Entries):
        return [line for name, entry in value.items() for line in _problems(schema.entry, entry, f"{key}.{name}")]
    found = []
    for name, item in value.items():
        rule = schema.keys.get(name, schema.refused.get(name))
        found += _problems(rule, item, _dotted(key, name)) if rule is not None else \
            [f"{_dotted(key, name)} is {_shown(item)}: {_unknown(name, schema.keys, key)}"]
    return found + [f"{_dotted(key, name)} is missing: {rule.allowed}" for name, rule in schema.keys.items()
                    if name not in value and name not in schema.optional]


def _mapping(raw, *keys) -> dict:
    """raw[keys[0]][keys[1]]..., or {} where that is not a mapping."""
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw if isinstance(raw, dict) else {}


def _with_defaults(cls, entry) -> dict:
    return {**{f.name: f.default for f in fields(cls) if f.default is not MISSING}, **entry} \
        if isinstance(entry, dict) else {}


def _selection_problems(selection: dict, templates: dict) -> list:
    """run.templates' names that templates does not define, defines for another engine, or that repeat."""
    found = []
    for engine, names in selection.items():
        for name in dict.fromkeys(names or []):
            other = _mapping(templates, name).get("engine")
            if name not in templates:
                close = difflib.get_close_matches(name, list(templates), n=1)
                found.append(f"run.templates.{engine} names {name!r}, which templates does not define"
                             + (f"; did you mean {close[0]}?" if close else ""))
            elif isinstance(other, str) and other in ENGINES and other != engine:
                found.append(f"run.templates.{engine} names {name!r}, a template of engine {other!r}: list it "
                             f"under run.templates.{other}")
            if names.count(name) > 1:
                found.append(f"run.templates.{engine} names {name!r} {names.count(name)} times: once is enough")
    return found


def _relations(raw: dict) -> list:
    """Problems between keys, each of which alone holds what its rule allows (those that do not are reported
    by `_problems`)."""
    found = []
    for name, template in _mapping(raw, "templates").items():
        t = _with_defaults(TemplateSpec, template)
        mode, size, divisor = t.get("resize_mode"), t.get("input_size"), t.get("size_divisor")
        if mode in ("stretch", "keep_ratio") and _whole(size) and _whole(divisor) and 0 < size < divisor:
            found.append(f"templates.{name}.input_size is {size}: a whole number >= size_divisor ({divisor}) with "
                         f"resize_mode {mode}")
    for name, dataset in _mapping(raw, "datasets").items():
        d = _with_defaults(DatasetSpec, dataset)
        val, test = d.get("val_ratio"), d.get("test_ratio")
        if FRACTION.holds(val) and FRACTION.holds(test) and val + test >= 1:
            found.append(f"datasets.{name}.val_ratio + test_ratio is {val} + {test}: below 1 together, so that "
                         "training keeps images")
    selection = _mapping(raw, "run").get("templates")
    if SELECTION.holds(selection):
        found += _selection_problems(selection, _mapping(raw, "templates"))
    chosen, defined = _mapping(raw, "run").get("datasets"), _mapping(raw, "datasets")
    if DATASET_SELECTION.holds(chosen):
        for name in dict.fromkeys(chosen):
            if name not in defined:
                close = difflib.get_close_matches(name, list(defined), n=1)
                found.append(f"run.datasets names {name!r}, which datasets does not define"
                             + (f"; did you mean {close[0]}?" if close else ""))
            if chosen.count(name) > 1:
                found.append(f"run.datasets names {name!r} {chosen.count(name)} times: once is enough")
    keep = _mapping(raw, "race").get("keep")
    if isinstance(keep, list):
        found += [f"race.keep names {name!r}, which templates does not define" for name in keep
                  if isinstance(name, str) and name not in _mapping(raw, "templates")]
    precisions, precision = _mapping(raw, "export").get("precisions"), _mapping(raw, "deploy").get("precision")
    if PRECISION_LIST.holds(precisions) and precision in list(PRECISIONS) and precision not in precisions:
        found.append(f"deploy.precision is {precision!r}: it must be one of export.precisions {precisions}, the IRs "
                     "that are exported and validated")
    return found


class _Yaml(yaml.SafeLoader):
    """YAML as DVC reads params.yaml: YAML 1.2's floats (PyYAML takes 1e-3, without a dot, for a string), and a
    key given twice in one mapping noted (PyYAML would keep the last one silently)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.repeated = []

    def construct_mapping(self, node, deep=False):
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        self.repeated += [f"line {k.start_mark.line + 1}: {k.value} is given a second time in the same mapping: "
                          "give each key once (YAML would keep the last silently)"
                          for i, (k, _) in enumerate(node.value)
                          if isinstance(k, yaml.ScalarNode) and k.value in keys[:i]]
        return super().construct_mapping(node, deep)


_Yaml.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                            list("-+0123456789."))


def _read(path: Path) -> dict:
    """params.yaml's contents; a file that is missing, not YAML or not a mapping, or repeats a key, is a
    ParamsError."""
    try:
        loader = _Yaml(Path(path).read_text())
    except FileNotFoundError:
        raise ParamsError([f"{path}: no such file (stages run in the project's root, next to params.yaml)"]) from None
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ParamsError([f"{path}: {where}not YAML: {getattr(error, 'problem', None) or error}"]) from None
    finally:
        loader.dispose()
    if loader.repeated:
        raise ParamsError([f"{path}: {line}" for line in loader.repeated])
    if not isinstance(raw, dict):
        raise ParamsError([f"{path}: holds {_shown(raw)}: {SCHEMA.allowed}"])
    return raw


def load_params(path: Path = PARAMS_FILE) -> Params:
    """params.yaml as typed specs, every key checked first: a ParamsError lists every problem, one per line."""
    raw = _read(path)
    found = _problems(SCHEMA, raw) + _relations(raw)
    if found:
        raise ParamsError([f"{path}: {line}" for line in found])
    return Params(
        data_dir=raw["data_dir"],
        datasets={k: DatasetSpec(**v) for k, v in raw["datasets"].items()},
        templates={k: TemplateSpec(**v) for k, v in raw["templates"].items()},
        run_templates=[name for names in raw["run"]["templates"].values() for name in names or []],
        run_datasets=list(raw["run"]["datasets"]),
        run_seeds=list(raw["run"].get("seeds", [0])),
        demo=raw["demo"],
        export=raw["export"],
        speed=raw["speed"],
        confidence=raw["confidence"],
        deploy={"latency_budget_ms": None, **raw["deploy"]},
        race={**RACE_OFF, **raw.get("race", {})},
    )
