"""Running an exported IR with OpenVINO alone: no torch, no training code.

The IR's runtime info (section `model_info`) carries the labels, the input spec and the score
threshold, so the `.xml` and `.bin` files are all a deployment needs.
"""

import json
from pathlib import Path

import numpy as np
import openvino as ov

RT_SECTION = "model_info"
OUTPUTS = ("boxes", "scores", "labels", "masks")


def read_info(model: ov.Model) -> dict:
    return {name: json.loads(model.get_rt_info([RT_SECTION, name]).astype(str))
            for name in ("labels", "input_spec", "score_threshold")}


class OpenVinoPredictor:
    """A `pipelines.inference` predictor for an IR on one of OpenVINO's devices."""

    def __init__(self, xml_path: Path, device: str = "CPU", precision: str = "f32"):
        core = ov.Core()
        model = core.read_model(xml_path)
        info = read_info(model)
        self.labels, self.input_spec, self.score_threshold = info["labels"], info["input_spec"], info["score_threshold"]
        # On CPUs with AMX or AVX512-BF16 OpenVINO would run in bf16 by default; validation runs the
        # precision the IR was exported in (an INT8 IR keeps its int8 layers whatever this says).
        self.compiled = core.compile_model(model, device, {"INFERENCE_PRECISION_HINT": precision})
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray):
        outputs = self.request.infer({0: batch})
        return [outputs[self.compiled.output(name)] for name in OUTPUTS]
