"""OpenVINO IR export of an inference graph in each precision of pipelines.precisions, with its metadata inside.

The IR's runtime info (pipelines.ir: labels, input spec, score threshold, arithmetic) makes it usable without
this project's training code.
"""

import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from pipelines.cells import IR_FILE
from pipelines.files import write_atomic
from pipelines.inference import InputSpec
from pipelines.ir import INFO, OUTPUTS, read_info, write_info
from pipelines.precisions import PRECISIONS


def convert(graph: torch.nn.Module, example: np.ndarray, labels: list, input_spec: dict,
            score_threshold: float) -> ov.Model:
    """Traces `graph` on `example` (any preprocessed input) into an OpenVINO model with its metadata.

    The example need not yield detections: NMS, the one step whose Python code branches on an empty input
    (torchvision's batched_nms, in both engines' graphs), is scripted while tracing, so its branch stays in the
    graph, and the IR of a model that detects nothing on the example is the one it would have been otherwise
    (tests/test_export.py checks it against PyTorch). The IR's input has the spec's fixed shape, or a dynamic
    height and width where the shape follows the image (keep_ratio)."""
    graph.eval()
    shape = InputSpec.from_dict(input_spec).fixed_shape or (1, 3, -1, -1)
    # torchvision's detection code warns that some Python values become trace constants; the ones that
    # depend on the input size are traced as sizes, and the validate stage measures the IR against PyTorch.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # Traced here, once, without the trace check OpenVINO's own tracing runs (0.6 s of a 5 s conversion).
        traced = torch.jit.trace(graph, torch.from_numpy(example), check_trace=False, strict=False)
        model = ov.convert_model(traced, example_input=torch.from_numpy(example), input=[list(shape)])
    write_info(model, labels=labels, input_spec=input_spec, score_threshold=score_threshold)
    for output, name in zip(model.outputs, OUTPUTS):
        output.get_tensor().set_names({name})
    return model


def write(model: ov.Model, folder: Path, precision: str, calibration: list = (), float_scopes: tuple = ()) -> Path:
    """Writes the IR of `precision` (a key of PRECISIONS) into `folder`/<precision>/ and returns its .xml; the
    converted `model` is the FP32 graph, which INT8 quantization reads back from `folder`/fp32 (written first).

    The precision's folder is written whole or not at all (pipelines.files): a reader opens model.xml and then
    model.bin, so the two are renamed into place together, as their folder."""
    found = PRECISIONS[precision]
    if found.weights == "int8":
        model = quantize_int8(folder / "fp32" / IR_FILE, list(calibration), float_scopes)
    write_info(model, inference_precision=found.compute)
    write_atomic(folder / precision, lambda staged: ov.save_model(model, staged / IR_FILE,
                                                                  compress_to_fp16=found.weights == "f16"))
    return folder / precision / IR_FILE


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
    write_info(quantized, **{k: v for k, v in read_info(model).items() if k in INFO})
    return quantized
