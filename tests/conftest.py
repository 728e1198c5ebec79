import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The tests check CPU behaviour, bit for bit where they compare runs (CUDA kernels such as RoIAlign's
# backward are not deterministic), so they hide any GPU from this process and every one it starts.
# The CUDA path is checked by benchmarks/cuda_training.py.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from pipelines.config import TemplateSpec  # noqa: E402


@pytest.fixture
def tiny_spec():
    """A very small template: trains and exports in seconds on a CPU."""
    def make(**overrides):
        # torchvision architecture keys among the overrides go under `model`; `model=` replaces them all.
        model = dict(backbone="resnet18", fpn_channels=32, anchor_sizes=[8, 16, 32, 64, 128], rpn_proposals=[100, 40],
                     rois_per_image=32, box_head_width=64, mask_head_channels=[32])
        model.update({k: overrides.pop(k) for k in list(overrides) if k in model})
        model = overrides.pop("model", model)
        values = dict(engine="torchvision", input_size=96, epochs=1, batch_size=2, lr=0.01, warmup_iters=2,
                      grad_clip=10.0, model=model)
        values.update(overrides)
        return TemplateSpec(**values)
    return make
