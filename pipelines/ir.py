"""Running an exported IR with OpenVINO alone: no torch, no training code.

The IR's runtime info (section `model_info`) carries the labels, the input spec, the score
threshold and the precision to compute in, so the `.xml` and `.bin` files are all a deployment needs.
"""

import json
from pathlib import Path

import numpy as np
import openvino as ov

from pipelines.cli import UserError

RT_SECTION = "model_info"
OUTPUTS = ("boxes", "scores", "labels", "masks")
# What the runtime info holds, in JSON: the class names, the input spec (pipelines.inference.InputSpec), the
# score threshold the graph applies, and the arithmetic to compute in (f32 or bf16).
INFO = ("labels", "input_spec", "score_threshold", "inference_precision")


def write_info(model: ov.Model, **values) -> None:
    """Stores `values` (keys of INFO) in the IR's runtime info."""
    unknown = set(values) - set(INFO)
    if unknown:
        raise ValueError(f"IR runtime info has no keys {sorted(unknown)}; it holds {list(INFO)}")
    for name, value in values.items():
        model.set_rt_info(json.dumps(value), [RT_SECTION, name])


def read_info(model: ov.Model) -> dict:
    info = {"inference_precision": "f32"}  # IRs written before it was recorded computed in f32
    info.update({name: json.loads(model.get_rt_info([RT_SECTION, name]).astype(str))
                 for name in INFO if model.has_rt_info([RT_SECTION, name])})
    return info


def execution_precision(core: ov.Core, device: str, wanted: str) -> str:
    """`wanted` ("f32" or "bf16"); "f32" where the device has no bfloat16 arithmetic (CPUs without
    AMX or AVX512-BF16), as OpenVINO itself would."""
    if wanted == "bf16" and "BF16" not in core.get_property(device, "OPTIMIZATION_CAPABILITIES"):
        return "f32"
    return wanted


class OpenVinoPredictor:
    """A `pipelines.inference` predictor for an IR on one of OpenVINO's devices."""

    def __init__(self, xml_path: Path, device: str = "CPU", threads: int | None = None):
        """`threads`: inference threads (None: OpenVINO's choice, every core for a latency request)."""
        core = ov.Core()
        for path in (Path(xml_path), Path(xml_path).with_suffix(".bin")):
            if not path.is_file():
                raise UserError(f"{path} does not exist: an IR is a model.xml with its model.bin beside it, as the "
                                "export stage writes them")
        try:
            model = core.read_model(xml_path)
        except RuntimeError as error:
            raise UserError(f"{xml_path} is not an IR OpenVINO can read ({str(error).splitlines()[0]}); export it "
                            "again") from None
        info = read_info(model)
        self.labels, self.input_spec, self.score_threshold = info["labels"], info["input_spec"], info["score_threshold"]
        # OpenVINO's own default on CPUs with AMX or AVX512-BF16 is bf16 arithmetic whatever the IR holds;
        # this runs what the IR asks for: f32 for the FP32 and FP16 IRs, bf16 for the BF16 one (an INT8
        # IR keeps its int8 layers either way).
        self.precision = execution_precision(core, device, info["inference_precision"])
        config = {"INFERENCE_PRECISION_HINT": self.precision}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray):
        outputs = self.request.infer({0: batch})
        return [outputs[self.compiled.output(name)] for name in OUTPUTS]
