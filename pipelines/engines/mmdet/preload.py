"""The third-party libraries this engine imports, for the preload server (pipelines/preload.py), which reads this
file by itself: nothing else of the engine runs there.

mmdet itself is not among them: importing it imports mmcv.ops, which ops.py's `install()` must come before, and
that is the engine's code, which the server never runs. seaborn is what mmdet.utils spends most of its import on.
"""

LIBRARIES = ("torchvision.models.detection", "timm", "mmengine.config", "mmengine.model", "mmengine.structures",
             "mmcv", "pytorchcv.model_provider", "seaborn")
