"""segkit: DeepLabV3+ semantic segmentation on PyTorch Lightning."""

__version__ = "0.1.0"
