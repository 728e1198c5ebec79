"""OpenVINO IR export of an inference graph (FP32, FP16-compressed, BF16, INT8), with its metadata inside.

The IR's runtime info carries the labels, the input spec (size, mean/std, resize mode), the score
threshold and the precision to compute in, so `pipelines.ir` runs it without this project's training code.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from pipelines.inference import InputSpec
from pipelines.ir import OUTPUTS, RT_SECTION


def convert(graph: torch.nn.Module, example: np.ndarray, labels: list, input_spec: dict,
            score_threshold: float) -> ov.Model:
    """Traces `graph` on `example` (an input that yields detections) into an OpenVINO model with its metadata.

    The IR's input has the spec's fixed shape, or a dynamic height and width where the shape follows the
    image (keep_ratio)."""
    graph.eval()
    shape = InputSpec.from_dict(input_spec).fixed_shape or (1, 3, -1, -1)
    # torchvision's detection code warns that some Python values become trace constants; the ones that
    # depend on the input size are traced as sizes, and the validate stage measures the IR against PyTorch.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(graph, example_input=torch.from_numpy(example), input=[list(shape)])
    info = {"labels": labels, "input_spec": input_spec, "score_threshold": score_threshold}
    for name, value in info.items():
        model.set_rt_info(json.dumps(value), [RT_SECTION, name])
    for output, name in zip(model.outputs, OUTPUTS):
        output.get_tensor().set_names({name})
    return model


def save(model: ov.Model, xml_path: Path, fp16: bool = False, inference_precision: str = "f32") -> None:
    """Writes `xml_path` and the `.bin` beside it; `fp16` stores the weights in half precision;
    `inference_precision` ("f32" or "bf16") is what the IR asks OpenVINO to compute in."""
    model.set_rt_info(json.dumps(inference_precision), [RT_SECTION, "inference_precision"])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, xml_path, compress_to_fp16=fp16)


# Layers that carry weights: the ones worth running in INT8.
WEIGHTED_OPS = {"Convolution", "ConvolutionBackpropData", "GroupConvolution", "MatMul"}


def quantize_int8(fp32_xml: Path, calibration: list, float_scopes: tuple) -> ov.Model:
    """Post-training INT8 quantization of a saved FP32 IR with NNCF, calibrated on preprocessed inputs.

    In the modules named by `float_scopes` (the parts that decode and pool boxes) only the weighted
    layers are quantized: NNCF would otherwise round box coordinates to 8 bits on their way through
    adds and multiplies, which cost up to 13 points of segm mAP on the demo data.
    It reads the saved IR: a freshly converted model still holds nodes that saving prunes, on which
    NNCF's graph builder fails.
    """
    import nncf  # heavy, and needed only here

    model = ov.Core().read_model(fp32_xml)
    keep_float = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in WEIGHTED_OPS
                  and any(scope in op.get_friendly_name() for scope in float_scopes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                                  ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False))
    for name in ("labels", "input_spec", "score_threshold"):
        quantized.set_rt_info(model.get_rt_info([RT_SECTION, name]).astype(str), [RT_SECTION, name])
    return quantized
