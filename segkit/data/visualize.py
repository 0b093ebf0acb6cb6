"""Colour-coded masks and overlays (for logging, prediction files and reports)."""
from __future__ import annotations

import numpy as np

from .base import IGNORE_INDEX
from .cityscapes import cityscapes_palette
from .voc import voc_palette

PALETTES = {"voc": voc_palette, "cityscapes": cityscapes_palette}


def colorize(mask: np.ndarray, palette: np.ndarray | str = "voc") -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; ``palette`` is a (256, 3) array or "voc"/"cityscapes".

    255 (ignored) takes the palette's entry 255: VOC's border colour, black for Cityscapes.
    """
    if isinstance(palette, str):
        palette = PALETTES[palette]()
    return np.asarray(palette, np.uint8)[np.asarray(mask, np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray | str = "voc", alpha: float = 0.5) -> np.ndarray:
    """Blends the colour-coded mask over an RGB image; ignored pixels (255) keep the image as it is."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image size {image.shape[:2]} != mask size {mask.shape}")
    colours = colorize(mask, palette).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    keep = (mask == IGNORE_INDEX)[..., None]
    return np.where(keep, image, blended.round()).astype(np.uint8)
