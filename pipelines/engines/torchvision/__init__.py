"""The torchvision Mask R-CNN engine: its models (model.py), trained by the shared loop (pipelines.training)."""

import torch

from pipelines.engines.torchvision.model import InferenceGraph, build_model, counted_forward

# Module names, as they appear in the exported IR's layer names, of the parts that decode and pool
# boxes: INT8 export keeps their arithmetic in float (see pipelines.export.quantize_int8).
INT8_FLOAT_SCOPES = ("rpn", "roi_heads")


class Adapter:
    """torchvision's MaskRCNN for the shared loop: it takes a list of images and returns its losses in
    training mode; its score threshold is part of the model (box_score_thresh)."""

    build = staticmethod(build_model)
    counted_forward = staticmethod(counted_forward)

    @staticmethod
    def losses(model, images: torch.Tensor, targets: list) -> dict:
        return model(list(images), targets)

    @staticmethod
    def inference_graph(model, spec):
        return InferenceGraph(model)
