"""The files ``segkit predict`` writes for one image, for every head, filled band by band: a whole image is one
band, an image too large to predict whole (:mod:`.tiled`) many, and both write the same files.

- single-label heads (multiclass, binary): ``<stem>.png`` (a palette PNG of class indices, coloured like the
  data set's masks) and ``<stem>_overlay.jpg`` (the image blended with the colour mask); with ``confidence``,
  ``<stem>_confidence.png`` and ``<stem>_entropy.png`` (16-bit, :func:`confidence_maps`);
- a multi-label head: ``<stem>_<class>.png`` (0/255) per class and ``<stem>_overlay.jpg`` (each pixel blended
  with the mean colour of the classes present there); with ``confidence``, ``<stem>_<class>_confidence.png``
  per class (16-bit: that class's probability, the value its threshold is compared with).

The full-size arrays are the image (which becomes the overlay in place, band by band), the decision (one byte a
pixel, or a class) and the 16-bit maps asked for; the overlay is encoded by OpenCV without a copy.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..data.base import write_label_png
from ..data.visualize import multilabel_overlay, overlay
from ..head import Head
from ..io.disk import written_whole


def output_paths(
    folder: Path, image: Path, confidence: bool = False, class_names: list[str] | None = None
) -> tuple[Path, ...]:
    """The files of ``image`` in ``folder``: the mask and the overlay, and with ``confidence`` the confidence and
    entropy maps; for a multi-label model (``class_names``) one mask per class, the overlay, and with
    ``confidence`` one probability map per class."""
    stem = image.stem
    if class_names is not None:
        paths = (*(folder / f"{stem}_{name}.png" for name in class_names), folder / f"{stem}_overlay.jpg")
        if confidence:
            paths += tuple(folder / f"{stem}_{name}_confidence.png" for name in class_names)
        return paths
    paths = (folder / f"{stem}.png", folder / f"{stem}_overlay.jpg")
    if confidence:
        paths += (folder / f"{stem}_confidence.png", folder / f"{stem}_entropy.png")
    return paths


def confidence_maps(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) class probabilities -> the top probability and the entropy divided by its maximum log(K), each
    in [0, 1] as a (H, W) uint16 map (value / 65535): 65535 is certainty in the first, total doubt (every class
    equally likely) in the second."""
    top = probs.amax(0)
    entropy = -(probs * probs.clamp(min=torch.finfo(probs.dtype).tiny).log()).sum(0) / math.log(probs.shape[0])
    return tuple(as_uint16(m) for m in (top, entropy))


def as_uint16(values: torch.Tensor) -> np.ndarray:
    """Values in [0, 1] as uint16 (value / 65535)."""
    return (values.clamp(0, 1) * 65535).round().to(torch.int32).cpu().numpy().astype(np.uint16)


class ImageOutputs:
    """The files of one image (:func:`output_paths`), filled by :meth:`add` band by band and written by
    :meth:`write`. ``picture``: the RGB uint8 image the overlay is drawn on, overwritten in place; ``head``
    decides what the files are; ``class_names``: a multi-label head's classes, each a mask of its own."""

    def __init__(
        self,
        folder: Path,
        image: Path,
        picture: np.ndarray,
        *,
        head: Head,
        palette: np.ndarray,
        class_names: list[str] | None = None,
        confidence: bool = False,
    ) -> None:
        self.multilabel = head.mode == "multilabel"
        if self.multilabel and (class_names is None or len(class_names) != head.num_classes):
            raise ValueError(f"a multi-label model's files are named by its {head.num_classes} classes")
        self.files = output_paths(folder, image, confidence, class_names if self.multilabel else None)
        if not (picture.flags.writeable and picture.flags.c_contiguous):
            picture = np.array(picture, order="C")  # a copy the overlay may overwrite
        self.picture, self.palette, self.confidence = picture, palette, confidence
        height, width = picture.shape[:2]
        count = head.num_classes if self.multilabel else 2
        self.maps = np.empty((count, height, width), np.uint16) if confidence else None
        self.labels: np.ndarray | None = None  # the decision, allocated with the first band's dtype and classes

    def add(self, y0: int, decided: torch.Tensor, probs: torch.Tensor | None = None) -> None:
        """The rows from ``y0``: ``decided`` (rows, W) class indices or a multi-label head's (K, rows, W) booleans
        (:meth:`~segkit.head.Head.decide`), ``probs`` their (K, rows, W) probabilities (needed for
        ``confidence``)."""
        decided = decided.cpu().numpy()
        height, width = self.picture.shape[:2]
        if self.labels is None:
            self.labels = np.empty((*decided.shape[:-2], height, width), decided.dtype)
        rows = slice(y0, y0 + decided.shape[-2])
        self.labels[..., rows, :] = decided
        band = self.picture[rows]
        if self.multilabel:
            band[:] = multilabel_overlay(band, decided, self.palette)
        else:
            band[:] = overlay(band, decided, self.palette)
        if self.confidence:
            maps = [as_uint16(p) for p in probs] if self.multilabel else confidence_maps(probs)
            for target, values in zip(self.maps, maps):
                target[rows] = values

    def write(self) -> None:
        """Writes every file, each whole or not at all (a full disk leaves no partial file)."""
        k = len(self.labels) if self.multilabel else 1
        masks, overlay_file, maps = self.files[:k], self.files[k], self.files[k + 1 :]
        if self.multilabel:
            for file, mask in zip(masks, self.labels):
                written_whole(file, lambda file=file, mask=mask: write_mask(file, mask))
        else:
            written_whole(masks[0], lambda: write_label_png(masks[0], self.labels, self.palette))
        self.labels = None  # freed before the overlay is encoded
        bgr = cv2.cvtColor(self.picture, cv2.COLOR_RGB2BGR, dst=self.picture)
        written_whole(overlay_file, lambda: _write_encoded(overlay_file, bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]))
        for file, values in zip(maps, self.maps if self.maps is not None else ()):
            written_whole(file, lambda file=file, values=values: Image.fromarray(values).save(file))  # 16-bit PNG


def write_mask(file: Path, mask: np.ndarray) -> None:
    """One class's mask as a 0/255 grayscale PNG, viewable as it is."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(file)


def _write_encoded(file: Path, image: np.ndarray, params: list[int]) -> None:
    """Encodes in memory with OpenCV (no copy of the pixels) and writes with Python, whose errors (a full
    disk) are raised rather than returned as False."""
    ok, data = cv2.imencode(file.suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {file} ({image.shape[1]} x {image.shape[0]})")
    with open(file, "wb") as f:
        f.write(data)
