"""Model templates of the torchvision engine."""
