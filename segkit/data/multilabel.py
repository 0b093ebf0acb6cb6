"""Overlapping labels (``mask_mode: multilabel``): a pixel may belong to several classes ("road" and "flooded").

Masks come as one folder per class, each holding one binary mask per image at the image's relative path:

    masks/road/site1/a.png      masks/flooded/site1/a.png      (for images/site1/a.tif)

A class mask is read per pixel as 0 = absent, 1 or above half the type's maximum = present (0/1 and 0/255 masks
both read), and ``ignore_index``, when set, = not labelled for this class (the pixel counts for the other
classes); any other value is an error naming the file. Decoded, an image's masks are one (H, W, K) uint8 array of
0, 1 and 255 (ignored), class k in channel k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import IGNORE_INDEX, Sample
from .pairing import MASK_EXTENSIONS, pair_folders


def pair_class_folders(
    images: Path, masks: Path, classes: tuple[str, ...], mask_suffix: str = ""
) -> tuple[list[Sample], list[str]]:
    """Images paired with their mask in every class folder ``masks/<class>``; a sample's ``mask`` is the first
    class's file. Returns the pairs and one problem per image without a mask of some class, per mask without an
    image, and per class folder that is missing or holds no masks."""
    for name in classes:
        if not (masks / name).is_dir():
            raise FileNotFoundError(
                f"class folder not found: {masks / name} (mask_mode: multilabel reads one folder of masks per class "
                "in data.classes)"
            )
    samples, problems = pair_folders(images, masks / classes[0], mask_suffix)
    for name in classes:
        if not any(p.suffix.lower() in MASK_EXTENSIONS for p in (masks / name).rglob("*")):
            problems.append(f"class folder {masks / name} holds no masks")
    keep = []
    for sample in samples:
        missing = [name for name in classes[1:] if class_file(sample.mask, masks, classes, name) is None]
        if missing:
            key = sample.mask.relative_to(masks / classes[0]).with_suffix("")
            problems += [
                f"image without a mask of class {n!r}: {sample.image} (no {masks / n / key}.png)" for n in missing
            ]
        else:
            keep.append(sample)
    return keep, problems


def class_file(first: Path, masks: Path, classes: tuple[str, ...], name: str) -> Path | None:
    """The mask of class ``name`` for the image whose first-class mask is ``first``, or None."""
    key = first.relative_to(masks / classes[0]).with_suffix("")
    same = masks / name / key.with_suffix(first.suffix)
    if same.is_file():
        return same
    return next((p for p in (masks / name / key.with_suffix(s) for s in MASK_EXTENSIONS) if p.is_file()), None)


class MultilabelMasks:
    """Reads an image's class masks (see the module doc) into one (H, W, K) array of 0, 1 and 255.

    Args:
        masks: the folder of class folders.
        classes: the class names, which are the folder names, in class-index order.
        ignore_index: the value of pixels not labelled for a class, or None.
    """

    mode = "multilabel"
    plain = False

    def __init__(self, masks: Path, classes: tuple[str, ...], ignore_index: int | None = None) -> None:
        self.masks, self.classes, self.ignore_index = Path(masks), tuple(classes), ignore_index
        self.num_classes = len(self.classes)

    def read(self, path: Path) -> np.ndarray:
        """The raw class masks (H, W, K) of the image whose first-class mask is ``path``."""
        layers = []
        for name in self.classes:
            file = class_file(Path(path), self.masks, self.classes, name)
            if file is None:
                raise FileNotFoundError(f"mask of class {name!r} not found for {path} (in {self.masks / name})")
            layers.append(_read_layer(file))
            if layers[-1].shape != layers[0].shape:
                raise ValueError(f"mask {file} is {layers[-1].shape}, the {self.classes[0]!r} mask {layers[0].shape}")
        return np.stack(layers, axis=2)

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw values -> 0 (absent), 1 (present), 255 (not labelled), per class; raises naming the file."""
        top = 65535 if raw.dtype == np.uint16 else 255
        out = np.zeros(raw.shape, np.uint8)
        present = (raw == 1) | (raw > top // 2)
        out[present] = 1
        if self.ignore_index is not None:
            out[raw == self.ignore_index] = IGNORE_INDEX
        bad = ~present & (raw != 0) & (raw != (self.ignore_index if self.ignore_index is not None else 0))
        if bad.any():
            k = int(np.flatnonzero(bad.any((0, 1)))[0])
            values = np.unique(raw[..., k][bad[..., k]])[:8].tolist()
            file = class_file(Path(path), self.masks, self.classes, self.classes[k])
            ignored = "" if self.ignore_index is None else f", {self.ignore_index} (not labelled)"
            raise ValueError(
                f"mask {file} holds values {values} that are neither 0 (absent) nor 1 or above {top // 2} "
                f"(present){ignored}"
            )
        return out

    def warnings(self, raw: np.ndarray, path: Path) -> list[str]:
        return []


def _read_layer(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as im:
            im.load()
            if im.mode not in ("1", "L", "P", "I;16", "I;16B", "I;16L", "I"):
                raise ValueError(f"mask {file} has PIL mode {im.mode}; a class mask is single-channel (0/255 or 0/1)")
            array = np.asarray(im)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot decode mask file {file}: {e}") from e
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    return array.astype(np.uint16) if array.dtype.itemsize > 1 else array
