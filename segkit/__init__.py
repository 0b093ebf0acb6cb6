"""segkit: DeepLabV3+ semantic segmentation on PyTorch Lightning."""

from .version import __version__

__all__ = ["Segmenter", "__version__"]


def __getattr__(name: str):
    # imported on first use: ``import segkit`` stays light (no torch) for the console script's --version
    if name == "Segmenter":
        from .inference.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")
