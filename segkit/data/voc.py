"""Pascal VOC 2012 segmentation in its on-disk layout, with the SBD-augmented training set as an option.

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png        palette PNGs: index = class, 255 = object border
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     (augmented set) single-channel PNGs, same values
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import Sample, SegmentationDataset

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC colour map (n, 3) uint8: bits of the class index spread over R, G, B (VOCdevkit ``labelcolormap``)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def read_id_list(path: Path) -> list[str]:
    """The image ids of a list file (first word of each non-empty line: VOC's and SBD's split lists)."""
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def find_voc_dir(root: str | Path) -> Path:
    """Resolves ``root`` to the VOC2012 folder, or raises naming what was looked for."""
    root = Path(root)
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise FileNotFoundError(
        f"no Pascal VOC 2012 data under data.root={root}: expected VOCdevkit/VOC2012/JPEGImages and "
        f"VOCdevkit/VOC2012/ImageSets/Segmentation there (see README, 'Preparing Pascal VOC')"
    )


class VOCSegmentation(SegmentationDataset):
    """One VOC split as (image, mask) pairs passed through an albumentations-style ``transform``.

    Args:
        root: data root (see module docstring).
        split: image list name in ``ImageSets/Segmentation`` (``train``, ``val``, ``train_aug``...).
        mask_dir: ``SegmentationClass`` or ``SegmentationClassAug``.
        num_classes: masks are checked to hold only ``0..num_classes-1`` and 255.
        transform: callable ``(image=..., mask=...) -> dict`` returning tensors.
    """

    def __init__(self, root: str | Path, split: str = "train", mask_dir: str = "SegmentationClass",
                 num_classes: int = 21, transform: Callable[..., dict] | None = None) -> None:
        self.voc_dir = find_voc_dir(root)
        list_file = self.voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"split list not found: {list_file}")
        names = read_id_list(list_file)
        if not names:
            raise ValueError(f"split list {list_file} is empty")
        samples = [Sample(n, self.voc_dir / "JPEGImages" / f"{n}.jpg", self.voc_dir / mask_dir / f"{n}.png")
                   for n in names]
        super().__init__(samples, num_classes, transform)
