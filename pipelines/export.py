"""OpenVINO IR export of an inference graph, and a predictor that runs the IR with OpenVINO alone.

The IR's runtime info carries the labels and the input spec (size, mean/std, resize mode), so the
IR is usable without this project's training code.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import torch

RT_SECTION = "model_info"


def export_ir(graph: torch.nn.Module, example: np.ndarray, labels: list, input_spec: dict, score_threshold: float,
              xml_path: Path, fp16: bool = False) -> None:
    """Traces `graph` on `example` (an input that yields detections) and saves `xml_path` + `.bin`."""
    graph.eval()
    # torchvision's detection code warns that some Python values become trace constants; they are
    # constants for a fixed input size, and the validate stage measures the IR against PyTorch.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(graph, example_input=torch.from_numpy(example), input=[list(example.shape)])
    info = {"labels": labels, "input_spec": input_spec, "score_threshold": score_threshold}
    for name, value in info.items():
        model.set_rt_info(json.dumps(value), [RT_SECTION, name])
    for output, name in zip(model.outputs, ("boxes", "scores", "labels", "masks")):
        output.get_tensor().set_names({name})
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, xml_path, compress_to_fp16=fp16)


class OpenVinoPredictor:
    """A `pipelines.inference` predictor for an IR on OpenVINO's CPU device."""

    def __init__(self, xml_path: Path, device: str = "CPU", precision: str = "f32"):
        core = ov.Core()
        model = core.read_model(xml_path)
        self.labels = json.loads(model.get_rt_info([RT_SECTION, "labels"]).astype(str))
        self.input_spec = json.loads(model.get_rt_info([RT_SECTION, "input_spec"]).astype(str))
        self.score_threshold = json.loads(model.get_rt_info([RT_SECTION, "score_threshold"]).astype(str))
        # On CPUs with AMX or AVX512-BF16 OpenVINO would run in bf16 by default; an FP32 IR is validated in f32.
        self.compiled = core.compile_model(model, device, {"INFERENCE_PRECISION_HINT": precision})
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray):
        outputs = self.request.infer({0: batch})
        return [outputs[self.compiled.output(name)] for name in ("boxes", "scores", "labels", "masks")]
