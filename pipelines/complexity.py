"""GFLOPs and parameters of a model, in the seed's convention (OTE's get_flops.py): GFLOPs = 2 x the
multiply-accumulates of convolutions and matrix products of one inference on the template's square input,
the box and mask heads each counted on COUNTED_ROIS boxes whatever the image holds."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.engines.contract import ModelAdapter

# The RoI heads' workload: the box and mask heads each on 100 boxes, the detections every seed template keeps
# per image. The seed's counter (mmdet 2.x) ran its heads on the proposals of one input, a number that depends
# on the weights and the image; with this count the OTE templates land within 10% of its published GFLOPs
# (docs/training.md, where GFLOPs are explained).
COUNTED_ROIS = 100


def count(model: torch.nn.Module, adapter: ModelAdapter, size: int) -> dict:
    """{"gflops", "params_m"} of a built model at a `size` x `size` input."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        adapter.counted_forward(model.eval(), torch.zeros(1, 3, size, size), COUNTED_ROIS)
    return {"gflops": round(counter.get_total_flops() / 1e9, 3),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
