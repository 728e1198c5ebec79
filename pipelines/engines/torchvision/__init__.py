"""The torchvision Mask R-CNN engine: its models (model.py), trained by the shared loop (pipelines.training)."""

from pathlib import Path

import torch

from pipelines import training
from pipelines.engines import Loaded, TrainResult
from pipelines.engines.torchvision.model import InferenceGraph, build_model

# Module names, as they appear in the exported IR's layer names, of the parts that decode and pool
# boxes: INT8 export keeps their arithmetic in float (see pipelines.export.quantize_int8).
INT8_FLOAT_SCOPES = ("rpn", "roi_heads")


class Adapter:
    """torchvision's MaskRCNN for the shared loop: it takes a list of images and returns its losses in
    training mode; its score threshold is part of the model (box_score_thresh)."""

    build = staticmethod(build_model)

    @staticmethod
    def losses(model, images: torch.Tensor, targets: list) -> dict:
        return model(list(images), targets)

    @staticmethod
    def inference_graph(model, spec):
        return InferenceGraph(model)


def train(spec, data_dir: Path, out_dir: Path, log=print, on_epoch=lambda record: None) -> TrainResult:
    return training.fit(spec, Adapter, data_dir, out_dir, log, on_epoch)


def load(checkpoint: Path) -> Loaded:
    return training.load(checkpoint, Adapter)


def complexity(checkpoint: Path) -> dict:
    return training.complexity(checkpoint, Adapter)
