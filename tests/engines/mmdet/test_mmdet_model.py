import numpy as np
import pytest
import torch
import torchvision

from pipelines.engines.mmdet import INT8_FLOAT_SCOPES, Adapter, ops
from pipelines.engines.mmdet.model import (PretrainedWeightsError, _pool, build_model, checkpoint_file,
                                           config_path, data_samples)
from pipelines.inference import InputSpec, postprocess, preprocess
from pipelines.ir import OpenVinoPredictor


def square_target(size=96, label=1):
    masks = torch.zeros(1, size, size, dtype=torch.uint8)
    masks[0, 20:60, 24:70] = 1
    return {"boxes": torch.tensor([[24.0, 20.0, 70.0, 60.0]]), "labels": torch.tensor([label]), "masks": masks}


def test_stand_in_ops_are_torchvisions():
    import mmcv.ops
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept, index = mmcv.ops.nms(boxes, scores, 0.5)
    assert index.tolist() == [0, 2] == torchvision.ops.nms(boxes, scores, 0.5).tolist()
    features = torch.rand(1, 4, 16, 16, requires_grad=True)
    rois = torch.tensor([[0.0, 1.5, 2.0, 9.0, 12.5], [0.0, 0.0, 0.0, 15.0, 15.0]])
    mine = mmcv.ops.roi_align(features, rois, (5, 5), 0.5, 2, "avg", True)
    reference = torchvision.ops.roi_align(features, rois, (5, 5), 0.5, 2, True)
    assert torch.equal(mine, reference)
    weights = torch.rand_like(mine)
    grad_mine, = torch.autograd.grad((mine * weights).sum(), features)
    grad_reference, = torch.autograd.grad((reference * weights).sum(), features)
    assert torch.allclose(grad_mine, grad_reference)
    with pytest.raises(NotImplementedError, match="'deform_conv_forward' needs mmcv's compiled ops"):
        ops._Ops("mmcv._ext").deform_conv_forward()
    from mmengine.utils.dl_utils import mmcv_full_available
    assert not mmcv_full_available()  # mmengine asks pkgutil, which needs the stand-in's module spec


def test_zoo_config_with_overrides_builds_and_learns(mmdet_spec):
    torch.manual_seed(0)
    model = build_model(mmdet_spec(), num_classes=3)
    assert model.backbone.depth == 18 and model.roi_head.bbox_head.num_classes == 3
    assert model.roi_head.mask_head.conv_logits.out_channels == 3
    images = torch.rand(1, 3, 96, 96)
    losses = Adapter.losses(model.train(), images, [square_target(label=2)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_graph_agrees_with_mmdets_own_predict(mmdet_spec):
    torch.manual_seed(0)
    spec = mmdet_spec()
    model = build_model(spec, num_classes=2).eval()
    images = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        boxes, scores, labels, masks = Adapter.inference_graph(model, spec)(images)
        theirs = model.predict(images, data_samples(images, [square_target()]), rescale=False)[0].pred_instances
    assert len(scores) > 0 and masks.shape[1:] == (28, 28)
    assert torch.allclose(boxes, theirs.bboxes, atol=1e-4) and torch.allclose(scores, theirs.scores)
    assert torch.equal(labels, theirs.labels + 1)  # 1-based, as pipelines.inference expects


def test_converted_roi_pooling_takes_any_number_of_rois_per_level(mmdet_spec):
    import openvino as ov

    class Pool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.extractor = build_model(mmdet_spec(), 2).roi_head.bbox_roi_extractor

        def forward(self, features, rois):
            return _pool(self.extractor, [features[:, :, ::s, ::s] for s in (1, 2, 4, 8)], rois)
    pool = Pool().eval()
    features = torch.rand(1, 32, 24, 24)
    one_each = torch.tensor([[0.0, 10, 10, 30, 30], [0, 0, 0, 500, 500]])  # one on the finest level, one on the coarsest
    with torch.no_grad():
        converted = ov.Core().compile_model(ov.convert_model(pool, example_input=(features, one_each)), "CPU")
        for rois in (one_each[1:], torch.tensor([[0.0, 10, 10, 30, 30], [0, 5, 5, 25, 25], [0, 1, 1, 20, 20]])):
            found = converted([features.numpy(), rois.numpy()])[0]
            assert np.allclose(found, pool(features, rois).numpy(), atol=1e-5)


def test_keys_and_configs_that_do_not_exist_are_named(mmdet_spec, tmp_path):
    with pytest.raises(ValueError, match=r"model keys \['box_head_width'\] it does not use"):
        build_model(mmdet_spec(model={"box_head_width": 64}), 2)
    with pytest.raises(ValueError, match="config 'mask_rcnn/no-such' is neither a file nor in mmdet's config zoo"):
        config_path("mask_rcnn/no-such")
    assert config_path("mask-rcnn_r50_fpn_1x_coco").name == "mask-rcnn_r50_fpn_1x_coco.py"  # found without its folder
    own = tmp_path / "mine.py"
    own.write_text("_base_ = '" + str(config_path("mask-rcnn_r50_fpn_1x_coco")) + "'\n")
    assert config_path(str(own)) == own


def test_local_checkpoint_starts_the_model_with_class_heads_rebuilt(mmdet_spec, tmp_path):
    torch.manual_seed(0)
    source = build_model(mmdet_spec(), num_classes=5)
    torch.save({"state_dict": source.state_dict(), "meta": {"CLASSES": list("abcde")}}, tmp_path / "start.pth")
    torch.manual_seed(1)
    model = build_model(mmdet_spec(pretrained=str(tmp_path / "start.pth")), num_classes=2)
    assert torch.equal(model.backbone.conv1.weight, source.backbone.conv1.weight)
    assert torch.equal(model.roi_head.mask_head.convs[0].conv.weight, source.roi_head.mask_head.convs[0].conv.weight)
    assert model.roi_head.bbox_head.fc_cls.out_features == 3  # 2 classes + background, not the checkpoint's 6
    digest = __import__("hashlib").sha256((tmp_path / "start.pth").read_bytes()).hexdigest()
    build_model(mmdet_spec(pretrained=str(tmp_path / "start.pth"), model={"pretrained_sha256": digest}), 2)
    with pytest.raises(PretrainedWeightsError, match="start.pth has sha256 .* not the template's 00"):
        build_model(mmdet_spec(pretrained=str(tmp_path / "start.pth"), model={"pretrained_sha256": "00"}), 2)
    with pytest.raises(PretrainedWeightsError, match="nowhere.pth does not exist"):
        build_model(mmdet_spec(pretrained=str(tmp_path / "nowhere.pth")), 2)


def test_offline_download_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = "https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r50_fpn_1x_coco/weights.pth"
    with pytest.raises(PretrainedWeightsError, match=f"could not download {url}: .* put that file at "
                                                     f"{tmp_path / 'hub' / 'checkpoints' / 'weights.pth'}"):
        checkpoint_file(url)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (tmp_path / "hub" / "checkpoints" / "weights.pth").write_bytes(b"x")  # put there by hand: no download
    assert checkpoint_file(url) == tmp_path / "hub" / "checkpoints" / "weights.pth"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.conftest import MMDET_SMALL, export_test_irs
    from pipelines.config import TemplateSpec
    spec = TemplateSpec(engine="mmdet", input_size=96, epochs=1, batch_size=1, lr=0.01, model=MMDET_SMALL,
                        score_threshold=0.0)  # random weights: keep every detection so there is something to compare
    torch.manual_seed(0)
    graph = Adapter.inference_graph(build_model(spec, 2), spec)
    folder = tmp_path_factory.mktemp("ir")
    rng = export_test_irs(graph, folder, INT8_FLOAT_SCOPES, precisions=("fp32", "int8"))
    return graph, folder, rng


def test_fp32_ir_matches_pytorch_on_another_image(exported):
    graph, folder, rng = exported
    batch, _ = preprocess(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), InputSpec(size=96))
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(batch))]
    found = OpenVinoPredictor(folder / "fp32" / "model.xml")(batch)
    assert len(expected[1]) > 0 and [len(o) for o in found] == [len(o) for o in expected]
    for mine, theirs in zip(found, expected):
        assert np.allclose(mine, theirs, atol=1e-3)
    results = postprocess(found, (1.0, 1.0), 60, 90, 1, 0.0)
    assert len(results) == len(expected[1])


def test_int8_ir_quantizes_the_backbone_and_keeps_box_arithmetic_float(exported):
    import openvino as ov
    _, folder, rng = exported
    model = ov.Core().read_model(folder / "int8" / "model.xml")
    quantized = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    names = [op.get_friendly_name() for op in quantized]
    assert any("backbone" in n for n in names)
    # In the box-decoding steps only weighted layers' inputs are quantized, never box coordinates (a Reshape
    # between is the flattening of RoI features before the box head's first MatMul).
    weighted = {"Convolution", "MatMul", "GroupConvolution", "ConvolutionBackpropData"}

    def consumers(op):
        found = {t.get_node() for o in op.outputs() for t in o.get_target_inputs()}
        return set().union(*(consumers(n) if n.get_type_name() == "Reshape" else {n} for n in found))
    in_steps = [op for op in quantized if any(scope in op.get_friendly_name() for scope in INT8_FLOAT_SCOPES)]
    assert in_steps and all({n.get_type_name() for n in consumers(op)} <= weighted for op in in_steps)
    batch, _ = preprocess(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), InputSpec(size=96))
    boxes, scores, labels, masks = OpenVinoPredictor(folder / "int8" / "model.xml")(batch)
    assert boxes.shape[1:] == (4,) and masks.shape[1:] == (28, 28) and len(scores) == len(labels)
