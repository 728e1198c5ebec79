"""Backbones the project adds to mmdet's registry.

`SharedBackbone`: a backbone of `pipelines.engines.backbones` (EfficientNet-Lite, the implementation every engine
shares, with its ImageNet weights from the project's install) as an mmdet backbone.

`PytorchcvBackbone`: an ImageNet classifier of pytorchcv (imgclsmob) as a multi-scale backbone, the way
OpenVINO Training Extensions' (OTE) mmdet fork wraps it for its EfficientNet-B2B Mask R-CNN: the
classifier's `features` kept under that name (so that a snapshot's `backbone.features.*` keys load as they are), its
`output` layer and the children after the last output dropped, and the feature maps of the `out_indices`
children of `features` returned.
"""

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from pytorchcv.model_provider import get_model
from torch import nn

from pipelines.engines import backbones


def register() -> None:
    """Makes the backbones here buildable by name (`type=...`) in mmdet configs."""
    MODELS.register_module(module=PytorchcvBackbone, force=True)
    MODELS.register_module(module=SharedBackbone, force=True)


class SharedBackbone(BaseModule):
    """`pipelines.engines.backbones.Features` of backbone `name` (e.g. efficientnet_lite0): feature maps of strides 4,
    8, 16 and 32 for the neck. `init_cfg=dict(type="Pretrained")` starts it from its ImageNet weights (the engine
    keeps that only for a template with `pretrained: imagenet`); frozen_stages and norm_eval as there."""

    def __init__(self, name: str, frozen_stages: int = -1, norm_eval: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.name, self.frozen_stages, self.norm_eval = name, frozen_stages, norm_eval
        self.features = backbones.Features(name, imagenet=False, frozen_stages=frozen_stages, norm_eval=norm_eval)

    def init_weights(self):
        if self.init_cfg and self.init_cfg.get("type") == "Pretrained":
            # Not mmengine's loader: the weights are the package's, renamed by pipelines.engines.backbones.
            self.features.load_imagenet()
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, x: torch.Tensor) -> tuple:
        return tuple(self.features(x))


class PytorchcvBackbone(BaseModule):
    """pytorchcv model `name` (e.g. efficientnet_b2b: TF "same" padding, batch-norm eps 1e-3, Swish).

    out_indices     children of `features` whose outputs go to the neck (efficientnet_b2b: 2..5 are the
                    stages of stride 4, 8, 16 and 32, with 24, 48, 120 and 352 channels)
    frozen_stages   children 0..frozen_stages are not trained (-1: all train)
    norm_eval       batch norms keep their running statistics while training
    pretrained      load pytorchcv's ImageNet weights (downloaded from its GitHub releases) in init_weights
    """

    def __init__(self, name: str, out_indices=(2, 3, 4, 5), frozen_stages: int = -1, norm_eval: bool = False,
                 pretrained: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        classifier = get_model(name, pretrained=False)
        self.name, self.pretrained = name, pretrained
        self.out_indices, self.frozen_stages, self.norm_eval = tuple(out_indices), frozen_stages, norm_eval
        # The children after the last output (efficientnet: the 1x1 final block and the pooling) serve no
        # output and are not in OTE's snapshots: dropped, as OTE drops them.
        self.features = classifier.features[:max(self.out_indices) + 1]
        self._freeze()

    def init_weights(self):
        if not self.pretrained:
            return super().init_weights()
        from pytorchcv.models.common.model_store import get_model_file
        # The classifier's file; its `output.*` weights (the ImageNet classes) have no place here.
        state = torch.load(get_model_file(self.name), map_location="cpu", weights_only=True)
        weights = {key: value for key, value in state.items() if key.startswith("features.")}
        missing = [key for key in self.state_dict() if key not in weights and "num_batches_tracked" not in key]
        if missing:
            raise RuntimeError(f"pytorchcv's ImageNet weights of {self.name} lack {missing[:5]}")
        self.load_state_dict(weights, strict=False)

    def forward(self, x: torch.Tensor) -> tuple:
        outputs = []
        for index, child in enumerate(self.features):
            x = child(x)
            if index in self.out_indices:
                outputs.append(x)
        return tuple(outputs)

    def _freeze(self):
        for index, child in enumerate(self.features):
            if index <= self.frozen_stages:
                child.eval()
                for parameter in child.parameters():
                    parameter.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
