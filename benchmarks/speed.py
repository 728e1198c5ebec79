"""Inference speed of every template: PyTorch eager against OpenVINO FP32, BF16 and INT8, on this CPU.

    python -m benchmarks.speed [--templates tiny r50 ...] [--repeats 10]

Each template is built as params.yaml describes it, with random weights (no download needed) and
2 classes, at its own input size. The same preprocessed image goes to all four; latency is the batch-1
median after warm-up, throughput uses OpenVINO's asynchronous requests. FP32 computes in f32; BF16 is the
same IR computed in bfloat16 (OpenVINO's default on CPUs with AMX or AVX512-BF16; f32 elsewhere, and the
table says which ran). Random weights make the heads see up to 100 detections, so these are upper
bounds on what a trained model costs.

A second table puts the f32 latencies against the arithmetic: the multiply-accumulates of this
image's inference (counted by PyTorch's FlopCounterMode) over each latency, next to what an f32
matrix product reaches on this CPU with the same threads. An f32 runtime cannot beat that rate, so
it bounds how much faster than PyTorch an FP32 IR can be.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.config import load_params
from pipelines.datasets.shapes import SHAPES, background, random_box, shape_mask, texture
from pipelines import engines
from pipelines.checkpoints import torch_predictor
from pipelines.export import convert, write
from pipelines.inference import preprocess, template_input
from pipelines.ir import OpenVinoPredictor
from pipelines.speed import latency, openvino_throughput


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


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The best f32 matrix-product rate of this CPU through PyTorch, GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def inference_gflop(graph, batch: np.ndarray) -> float:
    """Floating-point operations (2 per multiply-accumulate) of one inference on `batch`, in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        graph(torch.from_numpy(batch))
    return counter.get_total_flops() / 1e9


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
        graph = engine.Adapter.inference_graph(engine.Adapter.build(spec, 2), spec)
        input_spec = template_input(spec)
        batch, _ = preprocess(sample_image(spec.input_size, 0), input_spec)
        calibration = [preprocess(sample_image(spec.input_size, s), input_spec)[0] for s in range(1, 5)]
        with tempfile.TemporaryDirectory() as tmp:
            model = convert(graph, batch, ["a", "b"], input_spec.to_dict(), spec.score_threshold)
            fp32, bf16, int8 = (write(model, Path(tmp), p, calibration, engine.INT8_FLOAT_SCOPES)
                                for p in ("fp32", "bf16", "int8"))
            bf16_predictor = OpenVinoPredictor(bf16)

            eager = torch_predictor(graph)
            warmup = 2
            row = {"template": name, "input": spec.input_size, "gflop": inference_gflop(graph, batch),
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
    peak = matmul_gflops()
    print(f"\nf32 arithmetic rate; an f32 matrix product reaches {peak:.0f} GFLOP/s here "
          f"({torch.get_num_threads()} threads)")
    print(f"{'template':<12}{'GFLOP':>8}{'PyTorch GFLOP/s':>17}{'FP32 GFLOP/s':>14}{'FP32 / matmul':>15}"
          f"{'PyTorch/FP32 bound':>20}")
    for r in rows:
        pytorch_rate, fp32_rate = r["gflop"] / r["pytorch_ms"] * 1000, r["gflop"] / r["fp32_ms"] * 1000
        print(f"{r['template']:<12}{r['gflop']:>8.1f}{pytorch_rate:>17.0f}{fp32_rate:>14.0f}{fp32_rate / peak:>14.0%}"
              f"{peak / pytorch_rate:>19.2f}x")


if __name__ == "__main__":
    main()
