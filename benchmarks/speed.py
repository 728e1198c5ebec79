"""Inference speed of every template: PyTorch eager against OpenVINO FP32, BF16 and INT8, on this CPU.

    python benchmarks/speed.py [--templates tiny r50 ...] [--repeats 10]

Each template is built as params.yaml describes it, with random weights (no download needed) and
2 classes, at its own input size. The same preprocessed image goes to all four; latency is the batch-1
median after warm-up, throughput uses OpenVINO's asynchronous requests. FP32 computes in f32; BF16 is the
same IR computed in bfloat16 (OpenVINO's default on CPUs with AMX or AVX512-BF16; f32 elsewhere, and the
table says which ran). Random weights make the heads see up to 100 detections, so these are upper
bounds on what a trained model costs.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.config import load_params  # noqa: E402
from pipelines.datasets.shapes import SHAPES, background, random_box, shape_mask, texture  # noqa: E402
from pipelines import engines  # noqa: E402
from pipelines.engines import torch_predictor  # noqa: E402
from pipelines.export import convert, quantize_int8, save  # noqa: E402
from pipelines.inference import InputSpec, preprocess  # noqa: E402
from pipelines.ir import OpenVinoPredictor  # noqa: E402
from pipelines.models.maskrcnn import InferenceGraph, build_model  # noqa: E402
from pipelines.speed import latency, openvino_throughput  # noqa: E402


def sample_image(size: int, seed: int) -> np.ndarray:
    """A background with four textured shapes: something for the detector to look at."""
    rng = np.random.default_rng(seed)
    image = background(rng, size, size)
    for k, shape in enumerate(SHAPES[:4]):
        box = random_box(rng, size, size, size // 8, size // 3, [])
        if box is not None:
            mask = shape_mask(shape, size, size, box)
            image[mask] = texture(rng, size, size, (200, 60, 40), k)[mask]
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", nargs="+", help="keys of params.yaml templates (default: all)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--throughput-seconds", type=float, default=5.0)
    args = parser.parse_args()
    params = load_params()
    names = args.templates or list(params.templates)
    rows = []
    for name in names:
        spec = params.templates[name]
        spec = type(spec)(**{**spec.__dict__, "pretrained": "none"})
        engine = engines.get(spec.engine)
        torch.manual_seed(0)
        graph = InferenceGraph(build_model(spec, 2))
        input_spec = InputSpec(size=spec.input_size)
        batch, _ = preprocess(sample_image(spec.input_size, 0), input_spec)
        calibration = [preprocess(sample_image(spec.input_size, s), input_spec)[0] for s in range(1, 5)]
        with tempfile.TemporaryDirectory() as tmp:
            fp32, bf16, int8 = (Path(tmp) / p / "model.xml" for p in ("fp32", "bf16", "int8"))
            model = convert(graph, batch, ["a", "b"], input_spec.to_dict(), spec.score_threshold)
            save(model, fp32)
            save(model, bf16, inference_precision="bf16")
            save(quantize_int8(fp32, calibration, engine.INT8_FLOAT_SCOPES), int8)
            bf16_predictor = OpenVinoPredictor(bf16)

            eager = torch_predictor(graph)
            warmup = 2
            row = {"template": name, "input": spec.input_size,
                   "pytorch_ms": 1000 * latency(eager, batch, warmup, args.repeats),
                   "fp32_ms": 1000 * latency(OpenVinoPredictor(fp32), batch, warmup, args.repeats),
                   "bf16_ms": 1000 * latency(bf16_predictor, batch, warmup, args.repeats),
                   "bf16_ran_in": bf16_predictor.precision,
                   "int8_ms": 1000 * latency(OpenVinoPredictor(int8), batch, warmup, args.repeats),
                   "fp32_fps": openvino_throughput(fp32, batch, args.throughput_seconds),
                   "int8_fps": openvino_throughput(int8, batch, args.throughput_seconds)}
        rows.append(row)
        print(f"{name}: measured at {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)
    print(f"{'template':<12}{'input':>6}{'PyTorch ms':>12}{'FP32 ms':>10}{'BF16 ms':>10}{'INT8 ms':>10}"
          f"{'PyTorch/FP32':>14}{'PyTorch/BF16':>14}{'FP32/INT8':>11}{'FP32 img/s':>12}{'INT8 img/s':>12}"
          f"{'BF16 ran in':>13}")
    for r in rows:
        print(f"{r['template']:<12}{r['input']:>6}{r['pytorch_ms']:>12.1f}{r['fp32_ms']:>10.1f}{r['bf16_ms']:>10.1f}"
              f"{r['int8_ms']:>10.1f}{r['pytorch_ms'] / r['fp32_ms']:>13.2f}x{r['pytorch_ms'] / r['bf16_ms']:>13.2f}x"
              f"{r['fp32_ms'] / r['int8_ms']:>10.2f}x{r['fp32_fps']:>12.2f}{r['int8_fps']:>12.2f}{r['bf16_ran_in']:>13}")


if __name__ == "__main__":
    main()
