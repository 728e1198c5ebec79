# OpenVINO Training Extensions' efficientnet_b2b-mask_rcnn-480x480 (seed 000's template), written for mmdet 3: its
# model.py (OTEDetection 2.9) as what it changes in mmdet's Mask R-CNN: pytorchcv's EfficientNet-B2B, 80 channels
# everywhere after it, a box head of fc 512, 7 x 7 mask RoIs (14 x 14 masks), 256 sampled RoIs. The recipe (BGR
# input, mean, std 1, batch, lr, schedule, multiscale) lives in the template's params.yaml entry.
_base_ = './mask_rcnn_fpn.py'
model = dict(
    backbone=dict(type='PytorchcvBackbone', name='efficientnet_b2b', out_indices=(2, 3, 4, 5), frozen_stages=-1),
    neck=dict(in_channels=[24, 48, 120, 352], out_channels=80),
    rpn_head=dict(in_channels=80, feat_channels=80),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=80),
        bbox_head=dict(in_channels=80, fc_out_channels=512),
        mask_roi_extractor=dict(roi_layer=dict(output_size=7), out_channels=80),
        mask_head=dict(in_channels=80, conv_out_channels=80)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=256), mask_size=14)))
