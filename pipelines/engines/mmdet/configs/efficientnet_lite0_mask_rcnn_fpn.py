# A Mask R-CNN small enough to fine-tune on a 2-core CPU in minutes: the project's EfficientNet-Lite0 (the backbone
# every engine shares, pipelines/engines/backbones.py; its ImageNet start when a template says `pretrained: imagenet`),
# stem and first three stages frozen, batch norms kept, an FPN of 64 channels and light heads: 300 / 100 training
# proposals, 64 sampled RoIs, a box head of fc 256 and a mask head of 2 x 64 channels. The same sizes as the
# torchvision template `tv_lite0`.
_base_ = './mask_rcnn_fpn.py'
model = dict(
    backbone=dict(type='SharedBackbone', name='efficientnet_lite0', frozen_stages=3, norm_eval=True,
                  init_cfg=dict(type='Pretrained')),
    neck=dict(in_channels=[24, 40, 112, 320], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),  # anchors 16..256 px
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_convs=2)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=300, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=150, max_per_img=50)))
