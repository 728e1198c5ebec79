"""The torchvision Mask R-CNN engine: its models (model.py), trained by the shared loop (pipelines.training)."""

from pathlib import Path

import torch

from pipelines import training
from pipelines.config import TemplateSpec
from pipelines.engines import Loaded, TrainResult
from pipelines.engines.torchvision.model import InferenceGraph, build_model
from pipelines.engines.torchvision.model import complexity as model_complexity

# Module names, as they appear in the exported IR's layer names, of the parts that decode and pool
# boxes: INT8 export keeps their arithmetic in float (see pipelines.export.quantize_int8).
INT8_FLOAT_SCOPES = ("rpn", "roi_heads")


class Adapter:
    """torchvision's MaskRCNN for the shared loop: it takes a list of images and returns its losses in training mode."""

    build = staticmethod(build_model)
    inference_graph = staticmethod(InferenceGraph)

    @staticmethod
    def losses(model, images: torch.Tensor, targets: list) -> dict:
        return model(list(images), targets)


def train(spec: TemplateSpec, data_dir: Path, out_dir: Path, log=print, on_epoch=lambda record: None) -> TrainResult:
    return training.fit(spec, Adapter, data_dir, out_dir, log, on_epoch)


def _model(checkpoint: Path):
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    # The trained weights replace any pretrained start, so none is loaded here.
    spec = TemplateSpec(**{**state["template"], "pretrained": "none"})
    model = build_model(spec, len(state["labels"]))
    model.load_state_dict(state["model"])
    return model.eval(), spec, state["labels"]


def load(checkpoint: Path) -> Loaded:
    # The graph keeps the template's score threshold: detections below it never reach the mask head.
    # (Exporting with no threshold, to leave it all to post-processing, made the IR compute 100 masks
    # per image and ran 1.8x slower for the same mAP; an IR's `predict` can raise the threshold, not lower it.)
    model, spec, labels = _model(checkpoint)
    return Loaded(InferenceGraph(model), training.input_spec(spec), labels, spec.score_threshold)


def complexity(checkpoint: Path) -> dict:
    model, spec, _ = _model(checkpoint)
    return model_complexity(model, spec.input_size)
