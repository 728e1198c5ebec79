"""What an engine is: the whole contract between the shared stages and a training library.

An engine is a package `pipelines/engines/<name>/` registered in `pipelines.engines.ENGINES`; everything that
names its library lives in that folder. Its `__init__` provides:

    Adapter             a `ModelAdapter` (below): the shared loop (pipelines.training) trains its models,
                        pipelines.checkpoints loads them, pipelines.complexity counts them
    INT8_FLOAT_SCOPES   parts of the names of its IR layers that decode and pool boxes: INT8 export keeps
                        their arithmetic in float (pipelines.export.quantize_int8)

Its inference graph follows `pipelines.inference`'s predictor contract (a `[1, 3, H, W]` tensor in; boxes,
scores, 1-based labels and 28 x 28 mask probabilities out), so evaluation and OpenVINO export are the same
for every engine. A failed pretrained start raises `PretrainedWeightsError`. An engine declares the keys a
template's `model` may hold as a dataclass and reads them with `engine_options`, which refuses any other.

No module of this folder imports pipelines.config, which imports only the registry of this folder
(tests/test_imports.py): the arrows point one way.
"""

from dataclasses import dataclass, fields
from typing import Protocol

import torch

from pipelines.cli import UserError


class ModelAdapter(Protocol):
    """What an engine gives the loop."""

    def build(self, spec, num_classes: int) -> torch.nn.Module:
        """A model in training mode for `num_classes` object classes, started from `spec.pretrained`."""

    def losses(self, model: torch.nn.Module, images: torch.Tensor, targets: list) -> dict:
        """The named scalar losses of one batch (`images` [B, 3, H, W] preprocessed, `targets` one dict of
        boxes (x0, y0, x1, y1), labels (1-based) and masks (H x W) per image); `model` may be DDP-wrapped."""

    def inference_graph(self, model: torch.nn.Module, spec) -> torch.nn.Module:
        """The model as a `pipelines.inference` predictor graph (in eval mode) dropping detections that score
        below `spec.score_threshold`."""

    def counted_forward(self, model: torch.nn.Module, images: torch.Tensor, rois: int) -> None:
        """The work complexity figures count: backbone, neck and RPN head on `images`, the box and mask heads
        each on `rois` boxes."""


@dataclass(frozen=True)
class TrainResult:
    history: list              # one record per epoch: epoch, lr, losses, timings, val_segm_map (and its
                               # bootstrap replicates, val_segm_replicates), val_bbox_map
    best_epoch: int            # the epoch whose weights model.pt holds (best validation segm mAP)
    best_val_segm_map: float


@dataclass
class Loaded:
    """A trained model ready to predict: what evaluation and export need."""
    graph: object          # torch.nn.Module: [1, 3, H, W] -> boxes, scores, labels, mask probabilities
    input_spec: object     # pipelines.inference.InputSpec
    labels: list
    score_threshold: float


class ModelKeysError(UserError, ValueError):
    """A template's `model` holds keys its engine does not use."""


def engine_options(cls, spec, allowed=None):
    """The engine's architecture keys of template `spec` (a pipelines.config.TemplateSpec) as the engine's dataclass
    `cls` (whose field defaults are the defaults); `allowed` narrows the keys an architecture uses. An unknown key is
    a ModelKeysError naming it."""
    names = [f.name for f in fields(cls)] if allowed is None else list(allowed)
    unknown = sorted(set(spec.model) - set(names))
    if unknown:
        raise ModelKeysError(f"params.yaml: a template of engine {spec.engine!r} has model keys {unknown} it does "
                             f"not use{'' if allowed is None else ' with this architecture'}; it takes {names}")
    return cls(**spec.model)


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be had (offline machine, missing package or file, altered file)."""


def load_fitting_weights(model, state: dict, path) -> None:
    """Loads the weights of `state` (read from `path`) whose name and shape fit `model`, skipping the others:
    the class-specific layers, which the engine rebuilt for this dataset."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise PretrainedWeightsError(f"{path} holds no weights that fit this template's architecture")
    model.load_state_dict(usable, strict=False)
