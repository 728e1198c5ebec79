"""The third-party libraries this engine imports, for the preload server (pipelines/preload.py), which reads this
file by itself: nothing else of the engine runs there."""

LIBRARIES = ("torchvision.models.detection", "torchvision.ops", "timm")
