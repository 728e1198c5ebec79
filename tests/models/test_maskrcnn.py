import pytest
import torch

from pipelines.models.maskrcnn import (BACKBONES, InferenceGraph, PretrainedWeightsError, build_model, complexity,
                                       load_pretrained)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_trains_and_infers(tiny_spec, backbone):
    torch.manual_seed(0)
    model = build_model(tiny_spec(backbone=backbone, input_size=64), num_classes=3)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([2]),
              "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    target["masks"][0, 8:40, 8:40] = 1
    losses = model.train()([torch.rand(3, 64, 64)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    boxes, scores, labels, masks = InferenceGraph(model)(torch.rand(1, 3, 64, 64))
    assert boxes.shape[1] == 4 and masks.shape[1:] == (28, 28) and len(scores) == len(labels) == len(masks)


def test_complexity_is_computed(tiny_spec):
    small = complexity(build_model(tiny_spec(input_size=64), 2), 64)
    large = complexity(build_model(tiny_spec(input_size=128), 2), 128)
    assert 0 < small["gflops"] < large["gflops"]
    assert large["params_m"] == small["params_m"] > 11  # resnet18 alone holds 11.2 M


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
