"""The MMDetection engine: Mask R-CNN models from mmdet configs (model.py), trained by the shared loop
(pipelines.training), not by mmengine's Runner, so that resume, EMA, schedules, early stopping, DDP, AMP
and DVCLive records are the same for every engine. mmcv's compiled ops come from ops.py when mmcv was
installed without them."""

from pipelines.engines.mmdet.model import InferenceGraph, build_model, counted_forward, losses

# Module names, as they appear in the exported IR's layer names, of the parts that decode and pool
# boxes: INT8 export keeps their arithmetic in float (see pipelines.export.quantize_int8).
INT8_FLOAT_SCOPES = ("rpn_proposals", "rcnn_detections", "mask_probabilities")


class Adapter:
    """mmdet detectors for the shared loop."""

    build = staticmethod(build_model)
    losses = staticmethod(losses)
    counted_forward = staticmethod(counted_forward)

    @staticmethod
    def inference_graph(model, spec):
        return InferenceGraph(model, spec.score_threshold)
