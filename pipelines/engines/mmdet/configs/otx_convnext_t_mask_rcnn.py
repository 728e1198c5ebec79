# OpenVINO Training Extensions 1.x's MaskRCNN-ConvNeXt (seed 002's template), written for mmdet 3: mmdet's Mask
# R-CNN R50-FPN settings on the ConvNeXt-T backbone of mmpretrain (OTX used mmcls's: the same code and checkpoint
# keys), its four stages into the FPN.
_base_ = './mask_rcnn_fpn.py'
custom_imports = dict(imports=['mmpretrain.models'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False),
    neck=dict(in_channels=[96, 192, 384, 768]))
