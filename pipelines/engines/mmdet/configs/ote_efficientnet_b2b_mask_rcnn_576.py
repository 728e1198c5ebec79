# OpenVINO Training Extensions' efficientnet_b2b-mask_rcnn-576x576: the 480 model with a box head twice as wide,
# 14 x 14 mask RoIs (28 x 28 masks) and fewer test-time proposals.
_base_ = './ote_efficientnet_b2b_mask_rcnn_480.py'
model = dict(
    roi_head=dict(
        bbox_head=dict(fc_out_channels=1024),
        mask_roi_extractor=dict(roi_layer=dict(output_size=14))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))
