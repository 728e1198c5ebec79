import pytest
import torch

from pipelines.engines.torchvision.model import (BACKBONES, InferenceGraph, PretrainedWeightsError, build_model,
                                                load_pretrained)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_trains_and_infers(tiny_spec, backbone):
    torch.manual_seed(0)
    model = build_model(tiny_spec(backbone=backbone, input_size=64), num_classes=3)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([2]),
              "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    target["masks"][0, 8:40, 8:40] = 1
    image = torch.rand(3, 64, 64)
    losses = model.train()([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values()) and sum(losses.values()) > 0
    # A few steps on this one batch: the model learns it, so the total loss falls.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9)
    totals = []
    for _ in range(8):
        torch.manual_seed(1)  # the same RPN and RoI samples each step: only the weights change
        total = sum(model([image], [target]).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total))
    assert totals[-1] < 0.8 * totals[0], totals
    boxes, scores, labels, masks = InferenceGraph(model.eval())(torch.rand(1, 3, 64, 64))
    assert boxes.shape[1] == 4 and masks.shape[1:] == (28, 28) and len(scores) == len(labels) == len(masks)


def test_local_checkpoint_loads_and_heads_are_rebuilt(tiny_spec, tmp_path):
    torch.manual_seed(0)
    source = build_model(tiny_spec(), num_classes=5)
    torch.save({"model": source.state_dict()}, tmp_path / "start.pt")
    torch.manual_seed(1)
    model = build_model(tiny_spec(pretrained=str(tmp_path / "start.pt")), num_classes=2)
    backbone_key = "backbone.body.layer1.0.conv1.weight"
    assert torch.equal(model.state_dict()[backbone_key], source.state_dict()[backbone_key])
    # The class heads have the new dataset's shape (2 classes + background), not the checkpoint's.
    assert model.roi_heads.box_predictor.cls_score.out_features == 3


def test_missing_checkpoint_names_the_file(tiny_spec, tmp_path):
    with pytest.raises(PretrainedWeightsError, match="nowhere.pt does not exist"):
        build_model(tiny_spec(pretrained=str(tmp_path / "nowhere.pt")), 2)


def test_checkpoint_of_another_architecture_is_refused(tiny_spec, tmp_path):
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(PretrainedWeightsError, match="no weights that fit"):
        load_pretrained(build_model(tiny_spec(), 2), tmp_path / "other.pt")


def test_resnet50_fpn_v2_is_torchvisions_architecture_with_heads_for_the_dataset(tiny_spec, tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    spec = tiny_spec(model={"architecture": "maskrcnn_resnet50_fpn_v2"}, input_size=64)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=3)
    reference = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=4)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(ours[k].shape == theirs[k].shape for k in ours)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    assert set(model.train()([torch.rand(3, 64, 64)], [target]))
    boxes, scores, labels, masks = InferenceGraph(model)(torch.rand(1, 3, 64, 64))
    assert masks.shape[1:] == (28, 28)
    # A local snapshot (COCO-pretrained elsewhere, here 5 classes) starts it; the predictors are rebuilt.
    torch.save(build_model(spec, num_classes=5).state_dict(), tmp_path / "snapshot.pt")
    started = build_model(tiny_spec(model={"architecture": "maskrcnn_resnet50_fpn_v2"}, input_size=64,
                                    pretrained=str(tmp_path / "snapshot.pt")), num_classes=2)
    assert started.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3


def test_coco_weights_offline_say_which_file_to_provide(tiny_spec, monkeypatch):
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(type(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1), "get_state_dict", offline)
    spec = tiny_spec(model={"architecture": "maskrcnn_resnet50_fpn_v2"}, input_size=64, pretrained="coco")
    with pytest.raises(PretrainedWeightsError, match=r"put maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth into .*checkpoints"):
        build_model(spec, 2)
    with pytest.raises(PretrainedWeightsError, match="COCO weights for architecture maskrcnn_resnet50_fpn_v2 only"):
        build_model(tiny_spec(pretrained="coco"), 2)


def test_a_key_the_architecture_does_not_use_is_refused(tiny_spec):
    with pytest.raises(ValueError, match=r"model keys \['fpn_channels'\] it does not use with this architecture"):
        build_model(tiny_spec(model={"architecture": "maskrcnn_resnet50_fpn_v2", "fpn_channels": 64}), 2)
    with pytest.raises(ValueError, match=r"model keys \['depth'\] it does not use"):
        build_model(tiny_spec(model={"depth": 18}), 2)
