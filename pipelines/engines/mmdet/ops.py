"""mmcv's two compiled ops that Mask R-CNN needs, `nms` and `roi_align`, from torchvision's kernels.

mmcv publishes no wheels for this torch and its source build fails here, so the project installs
`mmcv-lite` (mmcv without compiled ops). mmcv looks every op up in a module `mmcv._ext` when its ops
package is imported; `install()` registers this stand-in under that name when no real `mmcv._ext` exists
(a full mmcv build takes precedence). Only the two ops below work; any other op mmcv looks up exists
(its import-time check passes) but raises when called, naming itself.
"""

import importlib.machinery
import importlib.util
import sys
import types

import torch
import torchvision


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    if offset != 0:
        raise NotImplementedError("nms with offset 1 (mmdet 1.x box convention) needs mmcv's compiled ops")
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def _check_avg(pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError("roi_align with pool_mode max needs mmcv's compiled ops (torchvision averages)")


def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width, spatial_scale,
                      sampling_ratio, pool_mode, aligned) -> None:
    """Writes the pooled features into `output`, as mmcv's kernel does."""
    _check_avg(pool_mode)
    output.copy_(torchvision.ops.roi_align(input, rois, (aligned_height, aligned_width), spatial_scale,
                                           sampling_ratio, aligned))


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height, aligned_width,
                       spatial_scale, sampling_ratio, pool_mode, aligned) -> None:
    """Writes d(output)/d(input) . grad_output into `grad_input`; RoIAlign is linear in its input, so the
    gradient of torchvision's op at any input (zeros here) is the one."""
    _check_avg(pool_mode)
    features = torch.zeros_like(grad_input, requires_grad=True)
    with torch.enable_grad():
        pooled = torchvision.ops.roi_align(features, rois, (aligned_height, aligned_width), spatial_scale,
                                           sampling_ratio, aligned)
        grad_input.copy_(torch.autograd.grad(pooled, features, grad_output)[0])


class _Ops(types.ModuleType):
    """`mmcv._ext`: the ops above; every other name mmcv asks for is an op that raises when called."""

    def __getattr__(self, name: str):
        if name.startswith("__"):  # not an op: `inspect` and pickling probe these
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(f"mmcv op {name!r} needs mmcv's compiled ops; pipelines/engines/mmdet/ops.py "
                                      f"provides nms and roi_align only (build mmcv with its ops to use others)")
        return missing


def install() -> bool:
    """Registers the stand-in as `mmcv._ext` unless a compiled one is installed; True if it did."""
    if importlib.util.find_spec("mmcv") is None:
        raise ImportError("the mmdet engine needs mmcv: `make setup` installs it, or run "
                          "`pip install --no-deps mmcv-lite==2.1.0` (--no-deps: it would add a second OpenCV)")
    if "mmcv._ext" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
        return False
    module = _Ops("mmcv._ext", __doc__)
    # No loader: what mmengine's `mmcv_full_available()` reads (through pkgutil) as "no compiled mmcv".
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    for op in (nms, roi_align_forward, roi_align_backward):
        setattr(module, op.__name__, op)
    sys.modules["mmcv._ext"] = module
    return True
