"""The OpenVINO IR precisions `export` can write and `validate` scores: the one list (export.precisions in
params.yaml takes its names). Each is a way of storing the weights and an arithmetic to compute in; a new
combination of these is one line here, and its IRs, metrics and report rows follow."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    weights: str           # f32 | f16 (half-precision storage, computed in f32) | int8 (NNCF post-training quantized)
    compute: str           # f32 | bf16: what the IR asks OpenVINO to compute in (bf16 runs as f32 where the CPU
                           # has no bfloat16 arithmetic; pipelines.ir records which ran)


# In report order. fp32 is always written: the others derive from it.
PRECISIONS = {
    "fp32": Precision(weights="f32", compute="f32"),
    "bf16": Precision(weights="f32", compute="bf16"),  # OpenVINO's own default on CPUs with AMX or AVX512-BF16
    "fp16": Precision(weights="f16", compute="f32"),
    "int8": Precision(weights="int8", compute="f32"),
}
