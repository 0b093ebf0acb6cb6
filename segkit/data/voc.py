"""Pascal VOC 2012 segmentation in its on-disk layout, with the SBD-augmented training set as an option.

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png        palette PNGs: index = class, 255 = object border
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     (augmented set) single-channel PNGs, same values
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IGNORE_INDEX = 255

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


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); raises naming the file when it is missing or cannot be decoded."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image file: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """Class-index mask (H, W) uint8 from a palette or single-channel PNG, read as indices, never as colours."""
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"mask {path} has PIL mode {im.mode}; expected a palette (P) or grayscale (L) PNG")
            return np.array(im)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot decode mask file {path}: {e}") from e


def check_mask_values(mask: np.ndarray, num_classes: int, path: Path) -> None:
    bad = np.unique(mask[(mask >= num_classes) & (mask != IGNORE_INDEX)])
    if bad.size:
        raise ValueError(f"mask {path} holds values {bad.tolist()} outside 0..{num_classes - 1} and {IGNORE_INDEX}")


class VOCSegmentation(Dataset):
    """One VOC split as (image, mask) pairs passed through an albumentations-style ``transform``.

    Args:
        root: data root (see module docstring).
        split: image list name in ``ImageSets/Segmentation`` (``train``, ``val``, ``train_aug``...).
        mask_dir: ``SegmentationClass`` or ``SegmentationClassAug``.
        num_classes: masks are checked to hold only ``0..num_classes-1`` and 255.
        transform: callable ``(image=..., mask=...) -> dict`` returning tensors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        mask_dir: str = "SegmentationClass",
        num_classes: int = 21,
        transform: Callable[..., dict] | None = None,
    ) -> None:
        self.voc_dir = find_voc_dir(root)
        list_file = self.voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"split list not found: {list_file}")
        self.ids: Sequence[str] = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"split list {list_file} is empty")
        self.mask_dir = self.voc_dir / mask_dir
        self.num_classes = num_classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw image (H, W, 3) uint8 and mask (H, W) uint8, checked."""
        name = self.ids[index]
        image_path = self.voc_dir / "JPEGImages" / f"{name}.jpg"
        mask_path = self.mask_dir / f"{name}.png"
        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise ValueError(f"size mismatch: image {image_path} is {image.shape[:2]}, mask {mask_path} is {mask.shape}")
        check_mask_values(mask, self.num_classes, mask_path)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image, mask = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)
        return {"image": image, "mask": mask.long(), "name": self.ids[index]}
