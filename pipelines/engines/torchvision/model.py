"""torchvision Mask R-CNN with an FPN on a named backbone, sized by a template's params.

Two architectures: `custom` builds the FPN model on a backbone of torchvision's (BACKBONES) or one of the
project's ImageNet backbones shared by every engine (pipelines.engines.backbones: EfficientNet-Lite) with the head
sizes (FPN width, box-head width, mask-head convs) as template params, since Mask R-CNN on a CPU spends
most of its time in the heads; `maskrcnn_resnet50_fpn_v2` is torchvision's model of that name
(ResNet-50, normalised FPN and heads), the one with COCO weights.
"""

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from pipelines.engines import backbones
from pipelines.engines.contract import PretrainedWeightsError, engine_options, load_fitting_weights

# backbone name -> (torchvision constructor, submodule holding the stages, stage -> FPN level name)
BACKBONES = {
    "resnet18": (torchvision.models.resnet18, None, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}),
    "resnet50": (torchvision.models.resnet50, None, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}),
    "efficientnet_b2": (torchvision.models.efficientnet_b2, "features", {"2": "0", "3": "1", "5": "2", "7": "3"}),
    "convnext_tiny": (torchvision.models.convnext_tiny, "features", {"1": "0", "3": "1", "5": "2", "7": "3"}),
}
FPN_LEVELS = ("0", "1", "2", "3")  # plus the max-pooled "pool" level used by the RPN only


@dataclass(frozen=True)
class ModelSpec:
    """The engine's keys under a template's `model` (see pipelines.engines.contract.engine_options)."""
    backbone: str = "resnet50"     # for architecture custom: resnet18 | resnet50 | efficientnet_b2 | convnext_tiny
                                   # (torchvision's) | efficientnet_lite0 | _lite1 | _lite2 (engines.backbones)
    architecture: str = "custom"   # custom (FPN and heads sized below) | maskrcnn_resnet50_fpn_v2 (torchvision's)
    fpn_channels: int = 256
    anchor_sizes: list = (32, 64, 128, 256, 512)  # one anchor size per FPN level (4 levels + pool)
    rpn_proposals: list = (2000, 1000)  # [pre-NMS, post-NMS] proposals per image in training; halved at test time
    rois_per_image: int = 512      # sampled RoIs per image for the box and mask heads
    box_head_width: int = 1024
    mask_head_channels: list = (256, 256, 256, 256)  # one conv layer per entry
    frozen_stages: int = -1        # EfficientNet-Lite: the stem and this many stages keep their weights (-1: none)
    norm_eval: bool = False        # EfficientNet-Lite: batch norms keep their ImageNet statistics


# The keys each architecture uses: torchvision's own model fixes its backbone, FPN and head sizes.
ARCHITECTURE_KEYS = {"custom": [f for f in ModelSpec.__dataclass_fields__],
                     "maskrcnn_resnet50_fpn_v2": ["architecture", "rpn_proposals", "rois_per_image"]}


def model_spec(spec) -> ModelSpec:
    """Template `spec`'s architecture keys, checked against what its architecture uses."""
    architecture = spec.model.get("architecture", "custom")
    if architecture not in ARCHITECTURE_KEYS:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURE_KEYS)}")
    return engine_options(ModelSpec, spec, ARCHITECTURE_KEYS[architecture])


class SharedBackboneWithFPN(nn.Module):
    """A backbone of pipelines.engines.backbones (feature maps of strides 4..32) with torchvision's FPN on top: the
    feature dict torchvision's Mask R-CNN takes ("0".."3", and "pool" for the RPN)."""

    def __init__(self, body: backbones.Features, out_channels: int):
        super().__init__()
        self.body, self.out_channels = body, out_channels
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra_blocks=LastLevelMaxPool())

    def forward(self, images: torch.Tensor) -> OrderedDict:
        return self.fpn(OrderedDict(zip(FPN_LEVELS, self.body(images))))


def _backbone(name: str, arch: ModelSpec, spec) -> nn.Module:
    imagenet = spec.pretrained == "imagenet"
    if name in backbones.BACKBONES:
        if imagenet:
            backbones.check_input(name, spec.mean, spec.std, spec.channels)
        body = backbones.Features(name, imagenet, arch.frozen_stages, arch.norm_eval)
        return SharedBackboneWithFPN(body, arch.fpn_channels)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES) + sorted(backbones.BACKBONES)}")
    if arch.frozen_stages != -1 or arch.norm_eval:
        raise ValueError(f"model keys frozen_stages and norm_eval apply to backbones {sorted(backbones.BACKBONES)}, "
                         f"not to {name}")
    constructor, stages_attr, return_layers = BACKBONES[name]
    weights = "DEFAULT" if imagenet else None
    try:
        network = constructor(weights=weights)
    except Exception as error:  # urllib raises several kinds when offline
        raise PretrainedWeightsError(
            f"could not load ImageNet weights for {name}: {error}. Without network access, put the torchvision "
            f"weights file into {torch.hub.get_dir()}/checkpoints/ or set the template's `pretrained` to "
            f"`none` or to a local checkpoint path") from error
    body = getattr(network, stages_attr) if stages_attr else network
    # Channel counts per stage, read off a dummy forward pass rather than typed in.
    with torch.no_grad():
        outputs = IntermediateLayerGetter(body, return_layers)(torch.zeros(1, 3, 64, 64))
    in_channels = [o.shape[1] for o in outputs.values()]
    return BackboneWithFPN(body, return_layers, in_channels, arch.fpn_channels, extra_blocks=LastLevelMaxPool())


def build_model(spec, num_classes: int) -> MaskRCNN:
    """Mask R-CNN for `num_classes` object classes (plus background) as template `spec` describes it.

    The model receives images already resized and normalised by `pipelines.inference`, so its own
    transform neither resizes nor normalises (see `Preprocessed`).
    """
    arch = model_spec(spec)
    if arch.architecture == "maskrcnn_resnet50_fpn_v2":
        return _resnet50_fpn_v2(spec, arch, num_classes)
    pretrained = spec.pretrained
    if pretrained == "coco":
        raise PretrainedWeightsError("torchvision has COCO weights for architecture maskrcnn_resnet50_fpn_v2 only; "
                                     "set `pretrained` to imagenet, none or a checkpoint path")
    backbone = _backbone(arch.backbone, arch, spec)
    anchors = AnchorGenerator(sizes=tuple((s,) for s in arch.anchor_sizes),
                              aspect_ratios=((0.5, 1.0, 2.0),) * len(arch.anchor_sizes))
    mask_channels = list(arch.mask_head_channels)
    pre_nms, post_nms = arch.rpn_proposals
    model = MaskRCNN(
        backbone, num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=pre_nms, rpn_post_nms_top_n_train=post_nms,
        rpn_pre_nms_top_n_test=pre_nms // 2, rpn_post_nms_top_n_test=post_nms // 2,
        box_roi_pool=MultiScaleRoIAlign(list(FPN_LEVELS), output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(arch.fpn_channels * 7 * 7, arch.box_head_width),
        box_predictor=FastRCNNPredictor(arch.box_head_width, num_classes + 1),
        box_batch_size_per_image=arch.rois_per_image, box_score_thresh=spec.score_threshold,
        mask_roi_pool=MultiScaleRoIAlign(list(FPN_LEVELS), output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(arch.fpn_channels, mask_channels, dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_channels[-1], mask_channels[-1], num_classes + 1),
    )
    model.transform = Preprocessed()
    if pretrained not in ("none", "imagenet"):
        load_pretrained(model, Path(pretrained))
    return model


class Preprocessed(GeneralizedRCNNTransform):
    """torchvision's input transform for images that `pipelines.inference` already resized, padded and
    normalised: it only batches them (padding a side that is no multiple of 32 up to one)."""

    def __init__(self):
        super().__init__(min_size=1, max_size=1, image_mean=[0.0] * 3, image_std=[1.0] * 3)

    def normalize(self, image):
        return image

    def resize(self, image, target=None):
        return image, target


def _resnet50_fpn_v2(spec, arch: ModelSpec, num_classes: int) -> MaskRCNN:
    """torchvision's maskrcnn_resnet50_fpn_v2, started from COCO or ImageNet weights or from scratch,
    with the class-specific predictors rebuilt for `num_classes`."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2

    pre_nms, post_nms = arch.rpn_proposals
    options = dict(rpn_pre_nms_top_n_train=pre_nms, rpn_post_nms_top_n_train=post_nms,
                   rpn_pre_nms_top_n_test=pre_nms // 2, rpn_post_nms_top_n_test=post_nms // 2,
                   box_batch_size_per_image=arch.rois_per_image, box_score_thresh=spec.score_threshold)
    weights = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1 if spec.pretrained == "coco" else None
    backbone_weights = ResNet50_Weights.IMAGENET1K_V1 if spec.pretrained == "imagenet" else None
    try:
        model = maskrcnn_resnet50_fpn_v2(weights=weights, weights_backbone=backbone_weights, **options)
    except Exception as error:  # urllib raises several kinds when offline
        name = (weights or backbone_weights).url.rsplit("/", 1)[-1]
        raise PretrainedWeightsError(
            f"could not load {spec.pretrained} weights for maskrcnn_resnet50_fpn_v2: {error}. Without network "
            f"access, put {name} into {torch.hub.get_dir()}/checkpoints/ or set the template's `pretrained` to "
            f"`none` or to a local checkpoint path") from error
    # COCO's 91 classes out, this dataset's in: only the two predictors depend on the class count.
    box_width = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_width, num_classes + 1)
    mask_width = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_width, mask_width, num_classes + 1)
    model.transform = Preprocessed()
    if spec.pretrained not in ("none", "imagenet", "coco"):
        load_pretrained(model, Path(spec.pretrained))
    return model


def load_pretrained(model: nn.Module, path: Path) -> None:
    """Loads a checkpoint's weights, skipping those whose shape differs (the class-specific heads)."""
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained checkpoint {path} does not exist; set the template's "
                                     f"`pretrained` to an existing file, `imagenet` or `none`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    load_fitting_weights(model, state.get("model", state), path)


def counted_forward(model: MaskRCNN, images: torch.Tensor, rois: int) -> None:
    """What complexity figures count (see pipelines.complexity): backbone, FPN and RPN head, and the
    box and mask heads each on `rois` boxes."""
    sizes = [(images.shape[-2], images.shape[-1])]
    features = model.backbone(images)
    model.rpn.head(list(features.values()))
    heads = model.roi_heads
    boxes = [images.new_tensor([[0, 0, sizes[0][1], sizes[0][0]]]).expand(rois, 4)]
    heads.box_predictor(heads.box_head(heads.box_roi_pool(features, boxes, sizes)))
    heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, boxes, sizes)))


class InferenceGraph(nn.Module):
    """The exportable part of Mask R-CNN: a `[1, 3, H, W]` tensor in, plain tensors out.

    Returns boxes `[N, 4]`, scores `[N]`, labels `[N]` and the 28 x 28 mask probabilities `[N, 28, 28]`
    of the predicted class; pasting masks into the image is left to `pipelines.inference`.
    """

    def __init__(self, model: MaskRCNN):
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor):
        sizes = [(images.shape[-2], images.shape[-1])]
        features = self.model.backbone(images)
        proposals, _ = self.model.rpn(ImageList(images, sizes), features)
        detections, _ = self.model.roi_heads(features, proposals, sizes)
        found = detections[0]
        return found["boxes"], found["scores"], found["labels"], found["masks"][:, 0]
