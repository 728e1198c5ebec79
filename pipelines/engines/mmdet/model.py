"""MMDetection Mask R-CNN models: built from an mmdet config (its config zoo or a file) with overrides from
params.yaml, fed the shared loop's batches, and run as an exportable inference graph.

mmdet is used as a library of model parts. Training calls the detector's own `loss`; inference is
`InferenceGraph`, written from the detector's parts with torchvision's nms and roi_align so that one
graph serves validation, evaluation and OpenVINO export (mmdet's `predict` pastes full-size masks and
runs mmcv ops that do not trace).
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from pipelines.engines import backbones
from pipelines.engines.contract import PretrainedWeightsError, engine_options
from pipelines.engines.mmdet import ops

ops.install()  # before mmcv.ops is imported: mmdet imports it everywhere

from pipelines.engines.mmdet import backbones as mmdet_backbones  # noqa: E402

from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import mmdet  # noqa: E402

register_all_modules(init_default_scope=True)
mmdet_backbones.register()
MMLogger.get_current_instance().setLevel(logging.WARNING)  # not every layer's initialisation, one by one

# mmdet ships its config zoo inside the package.
ZOO = Path(mmdet.__file__).parent / ".mim" / "configs"
PROJECT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ModelSpec:
    """The engine's keys under a template's `model` (see pipelines.engines.contract.engine_options)."""
    config: str = "mask_rcnn/mask-rcnn_r50_fpn_1x_coco"  # a config of mmdet's zoo, or a .py file in the project
    overrides: dict = field(default_factory=dict)  # dotted keys under the config's `model`, e.g. backbone.depth: 18
    pretrained_sha256: str = ""    # sha256 of the `pretrained` file or URL, checked when given; a prefix of at
                                   # least 8 digits will do (OpenMMLab's file names end with the first 8)


def config_path(name: str) -> Path:
    """A config file (relative to the working directory or the project), or mmdet's zoo config of that name
    (folder optional, `.py` optional)."""
    if name.endswith(".py"):
        for folder in (Path.cwd(), PROJECT):  # a project path works from any working directory
            if (folder / name).is_file():
                return folder / name
    stem = name.removesuffix(".py")
    candidates = [ZOO / f"{stem}.py"] if "/" in stem else sorted(ZOO.glob(f"*/{stem}.py"))
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise ValueError(f"mmdet config {name!r} is neither a file nor in mmdet's config zoo ({ZOO}); "
                         f"name one such as mask_rcnn/mask-rcnn_r50_fpn_1x_coco")
    return found[0]


def model_config(spec, arch: ModelSpec, num_classes: int) -> Config:
    """The config's `model` with the template's overrides and this dataset's class count."""
    cfg = Config.fromfile(config_path(arch.config))
    cfg.merge_from_dict({f"model.{key}": value for key, value in arch.overrides.items()})
    model = cfg.model
    heads = [model.get("roi_head", {}).get(h) for h in ("bbox_head", "mask_head")]
    if not all(isinstance(h, dict) for h in heads):
        raise ValueError(f"mmdet config {arch.config!r} is not a Mask R-CNN with one box head and one mask head")
    for head in heads:
        head.num_classes = num_classes
    # Pre-processing is the project's (pipelines.inference): the detector gets normalised, padded tensors.
    model.pop("data_preprocessor", None)
    if spec.pretrained != "imagenet":  # the config's ImageNet start would download; other starts load below
        model.backbone.init_cfg = None
    return model


def build_model(spec, num_classes: int) -> nn.Module:
    """The template's detector for `num_classes` object classes, initialised as its config says and then
    started from `spec.pretrained` (none, imagenet: the config's backbone start, a checkpoint file or URL)."""
    arch = engine_options(ModelSpec, spec)
    config = model_config(spec, arch, num_classes)
    if spec.pretrained == "imagenet" and config.backbone.type == "SharedBackbone":
        backbones.check_input(config.backbone.name, spec.mean, spec.std, spec.channels)
    with DefaultScope.overwrite_default_scope("mmdet"):  # whatever scope an mmengine Runner left current
        model = MODELS.build(config)
    try:
        model.init_weights()
    except Exception as error:  # the config's ImageNet start downloads
        raise PretrainedWeightsError(f"could not load the backbone's ImageNet weights named in the config: "
                                     f"{error}. Set `pretrained` to none or to a local checkpoint") from error
    for module in model.modules():
        if hasattr(module, "use_torchvision"):  # mmcv's RoIAlign: torchvision's kernel has a backward pass
            module.use_torchvision = True
    if spec.pretrained not in ("none", "imagenet"):
        load_pretrained(model, checkpoint_file(spec.pretrained, arch.pretrained_sha256))
    return model


def checkpoint_file(source: str, sha256: str = "") -> Path:
    """A local checkpoint: the file itself, or a URL's download in torch's cache; checked against `sha256`."""
    if "://" in source:
        path = Path(torch.hub.get_dir()) / "checkpoints" / source.rsplit("/", 1)[-1]
        if not path.is_file():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(source, str(path), progress=True)
            except Exception as error:  # urllib raises several kinds when offline
                raise PretrainedWeightsError(
                    f"could not download {source}: {error}. Without network access, put that file at {path} "
                    f"or set the template's `pretrained` to a local checkpoint path or `none`") from error
    else:
        path = Path(source)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"pretrained checkpoint {path} does not exist. `make fetch` downloads the snapshots params.yaml's "
                f"`fetch` lists into data/raw/snapshots (where another machine pushed them: `dvc pull "
                f"data/raw/snapshots.dvc`); or set the template's `pretrained` to an existing file, a URL or `none`")
    if sha256:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if len(sha256) < 8 or not digest.startswith(sha256.lower()):
            raise PretrainedWeightsError(f"{path} has sha256 {digest}, not the template's {sha256}: a different "
                                         f"or damaged file; delete it to download it again")
    return path


# Layers whose shape follows the class count: rebuilt for the dataset, never loaded from another one.
CLASS_LAYERS = (".fc_cls.", ".fc_reg.", ".conv_logits.")
# A checkpoint must fill these entirely: a start that leaves part of them random is not the template's.
REQUIRED_PARTS = ("backbone.", "neck.")


def load_pretrained(model: nn.Module, path: Path, log=print) -> None:
    """Loads an mmdet checkpoint (mmdet 2.x or 3.x: the key layout of Mask R-CNN is the same) into `model`:
    every tensor but the class-specific layers (rebuilt for this dataset) must fit. Refused, naming the key:
    a tensor of another shape outside those layers, a backbone or neck tensor the checkpoint lacks. Other
    missing or unexpected tensors are printed."""
    # mmdet checkpoints hold metadata objects besides tensors, which weights_only refuses: the file is
    # one the template names, trusted like its config.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
    state = {key.removeprefix("module."): value for key, value in state.items()}
    own = model.state_dict()
    rebuilt = [k for k in own if k in state and own[k].shape != state[k].shape and any(c in k for c in CLASS_LAYERS)]
    for key in own:
        if key in state and own[key].shape != state[key].shape and key not in rebuilt:
            raise PretrainedWeightsError(f"{path}: {key} has shape {list(state[key].shape)}, the template's "
                                         f"{list(own[key].shape)}: the checkpoint is of another architecture")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    required = [k for k in missing if k.startswith(REQUIRED_PARTS)]
    if required:
        raise PretrainedWeightsError(f"{path} lacks {len(required)} backbone/neck tensors of the template, "
                                     f"first {required[0]}: the checkpoint is of another architecture")
    unexpected = [k for k in state if k not in own]
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in rebuilt}, strict=False)
    loaded = len(own) - len(missing) - len(rebuilt)
    log(f"pretrained {path.name}: {loaded} tensors loaded; rebuilt for this dataset's classes: {rebuilt or 'none'}")
    if missing:
        log(f"  not in the checkpoint (left as initialised): {missing}")
    if unexpected:
        log(f"  in the checkpoint but not in the template (ignored): {unexpected}")


def data_samples(images: torch.Tensor, targets: list) -> list:
    """The shared loop's targets as mmdet's: 0-based labels, bitmap masks, the (padded) canvas as image shape."""
    size = tuple(images.shape[-2:])
    samples = []
    for target in targets:
        sample = DetDataSample(metainfo={"img_shape": size, "pad_shape": size, "batch_input_shape": size,
                                         "ori_shape": size, "scale_factor": (1.0, 1.0)})
        sample.gt_instances = InstanceData(bboxes=target["boxes"], labels=target["labels"] - 1,
                                           masks=BitmapMasks(target["masks"].cpu().numpy(), *size))
        samples.append(sample)
    return samples


def losses(model: nn.Module, images: torch.Tensor, targets: list) -> dict:
    """The detector's losses (lists of per-level terms summed); its accuracy figures are left out."""
    found = model(images, data_samples(images, targets), mode="loss")
    return {name: sum(value) if isinstance(value, (list, tuple)) else value
            for name, value in found.items() if "loss" in name}


def counted_forward(model: nn.Module, images: torch.Tensor, rois: int) -> None:
    """What complexity figures count (see pipelines.complexity): backbone, neck and RPN head, and the
    box and mask heads each on `rois` boxes."""
    features = model.extract_feat(images)
    model.rpn_head(features)
    roi_head, (height, width) = model.roi_head, images.shape[-2:]
    boxes = images.new_tensor([[0, 0, 0, width, height]]).expand(rois, 5)
    roi_head.bbox_head(_pool(roi_head.bbox_roi_extractor, features, boxes))
    roi_head.mask_head(_pool(roi_head.mask_roi_extractor, features, boxes))


class _Step(nn.Module):
    """Runs a function as a named module, so that the exported IR's layer names say which step they belong to
    (INT8 export keeps the box arithmetic of named steps in float)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *args):
        return self.function(*args)


class InferenceGraph(nn.Module):
    """A `[1, 3, H, W]` tensor in; boxes `[N, 4]`, scores `[N]`, 1-based labels `[N]` and the 28 x 28 mask
    probabilities `[N, 28, 28]` of each box's class out (see pipelines.inference).

    The detector's backbone, neck and heads run as they are; between them, proposal selection, RoI pooling
    and per-class NMS follow mmdet's test-time rules (its `test_cfg`) with torchvision's ops, which trace.
    Detections scoring at most `score_threshold` are dropped before the mask head.
    """

    def __init__(self, model: nn.Module, score_threshold: float):
        super().__init__()
        self.model, self.score_threshold = model.eval(), score_threshold
        self.rpn_cfg, self.rcnn_cfg = model.test_cfg.rpn, model.test_cfg.rcnn
        if not model.rpn_head.use_sigmoid_cls:
            raise ValueError("the inference graph handles RPN heads with sigmoid scores only")
        self.rpn_proposals = _Step(self._proposals)
        self.rcnn_detections = _Step(self._detections)
        self.mask_probabilities = _Step(self._masks)

    def forward(self, images: torch.Tensor):
        features = self.model.extract_feat(images)
        proposals = self.rpn_proposals(features, images)
        boxes, scores, labels = self.rcnn_detections(features, proposals, images)
        return boxes, scores, labels + 1, self.mask_probabilities(features, boxes, labels)

    def _proposals(self, features, images) -> torch.Tensor:
        """RPN proposals of one image: the top `nms_pre` anchors of each level, decoded, empty boxes dropped,
        NMS per level, the best `max_per_img` kept."""
        head, image_size = self.model.rpn_head, images.shape[-2:]
        class_maps, delta_maps = head(features)
        anchors = head.prior_generator.grid_priors([m.shape[-2:] for m in class_maps], device=class_maps[0].device)
        boxes, scores, levels = [], [], []
        for level, (class_map, delta_map, level_anchors) in enumerate(zip(class_maps, delta_maps, anchors)):
            level_scores = class_map[0].permute(1, 2, 0).reshape(-1).sigmoid()
            level_deltas = delta_map[0].permute(1, 2, 0).reshape(-1, 4)
            # k as a tensor of the map's size: a Python min() would freeze the traced size into the IR
            top = level_scores.topk(torch.minimum(torch.as_tensor(level_scores.shape[0]),
                                                  torch.as_tensor(self.rpn_cfg.nms_pre))).indices
            boxes.append(head.bbox_coder.decode(level_anchors[top], level_deltas[top], max_shape=image_size))
            scores.append(level_scores[top])
            levels.append(torch.full_like(top, level))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        min_size = self.rpn_cfg.get("min_bbox_size", 0)
        valid = torch.where(((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size))[0]
        boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        keep = torchvision.ops.batched_nms(boxes, scores, levels, self.rpn_cfg.nms.iou_threshold)
        return boxes[keep[:self.rpn_cfg.max_per_img]]

    def _detections(self, features, proposals, images):
        """Class scores and boxes of each proposal; per class, those above the threshold after NMS."""
        roi_head = self.model.roi_head
        rois = torch.cat([torch.zeros_like(proposals[:, :1]), proposals], dim=1)
        class_logits, deltas = roi_head.bbox_head(_pool(roi_head.bbox_roi_extractor, features, rois))
        scores = class_logits.softmax(dim=-1)[:, :-1]  # mmdet puts the background last
        classes = scores.shape[1]
        boxes = roi_head.bbox_head.bbox_coder.decode(proposals, deltas, max_shape=images.shape[-2:])
        boxes = boxes.reshape(-1, classes, 4) if boxes.shape[-1] != 4 else boxes[:, None].expand(-1, classes, 4)
        candidate, label = torch.where(scores > self.score_threshold)
        boxes, scores = boxes[candidate, label], scores[candidate, label]
        keep = torchvision.ops.batched_nms(boxes, scores, label, self.rcnn_cfg.nms.iou_threshold)
        keep = keep[:self.rcnn_cfg.max_per_img]
        return boxes[keep], scores[keep], label[keep]

    def _masks(self, features, boxes, labels) -> torch.Tensor:
        """The mask head's probabilities for each detection's own class."""
        roi_head = self.model.roi_head
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        logits = roi_head.mask_head(_pool(roi_head.mask_roi_extractor, features, rois))
        return logits[torch.arange(labels.shape[0]), labels].sigmoid()


def _pool(extractor, features, rois: torch.Tensor) -> torch.Tensor:
    """mmdet's SingleRoIExtractor (each RoI pooled from the level its size maps to) with torchvision's
    roi_align and no data-dependent branches, so that a trace keeps every level."""
    layers = extractor.roi_layers
    levels = extractor.map_roi_levels(rois, len(layers))
    size = layers[0].output_size
    pooled = features[0].new_zeros(rois.shape[0], extractor.out_channels, *size)
    for level, layer in enumerate(layers):
        index = torch.where(levels == level)[0]
        # index_put_, not `pooled[index] = ...`: item assignment squeezes a value of one row, and an IR
        # converted while a level held one RoI would then fail on any other count.
        pooled.index_put_((index,), torchvision.ops.roi_align(
            features[level], rois[index], size, layer.spatial_scale, layer.sampling_ratio, layer.aligned))
    return pooled
