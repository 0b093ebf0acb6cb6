"""Colour-coded masks and overlays (for logging, prediction files and reports)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .base import IGNORE_INDEX
from .cityscapes import cityscapes_palette
from .palette import voc_palette

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


def multilabel_overlay(image: np.ndarray, decided: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB uint8 ``image`` with each pixel blended half and half with the mean colour of the classes present
    there (``decided``: (K, H, W) booleans); pixels of no class are left as they are."""
    colours = np.asarray(palette, np.float32)[: len(decided)]
    count = decided.sum(0)
    mean = np.einsum("khw,kc->hwc", decided.astype(np.float32), colours) / np.maximum(count, 1)[..., None]
    return np.where(count[..., None] > 0, 0.5 * image + 0.5 * mean, image).round().astype(np.uint8)


def save_overlay(path: Path, image: np.ndarray, mask: np.ndarray, palette: np.ndarray | str = "voc") -> None:
    """The overlay of ``mask`` on ``image`` as a JPEG (quality 90)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, mask, palette)).save(path, quality=90)


def confusion_heatmap(confmat, cell: int = 16) -> np.ndarray:
    """(K, K) confusion counts (rows: ground truth) -> RGB heat map, rows normalized by their pixel count."""
    cm = np.asarray(confmat, np.float64)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    heat = cv2.applyColorMap((255 * rows).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    heat = cv2.resize(heat, None, fx=cell, fy=cell, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
