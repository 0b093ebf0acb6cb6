"""Reading the masks of a data set of your own: class indices (8 or 16 bit, palette PNGs as indices), colours
mapped through a palette, or binary foreground masks; every value is checked, and one that is not a class is an
error naming the file and the values, never a silent label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import IGNORE_INDEX

MASK_MODES = ("index", "rgb", "binary", "multilabel")  # multilabel: segkit.data.multilabel


class MaskDecoder:
    """Raw mask files -> train ids (0..K-1, 255 ignored), checked.

    Args:
        mode: ``index`` (class indices, 8 or 16 bit; palette PNGs read as indices), ``rgb`` (colours, mapped
            through ``palette``) or ``binary`` (0 -> 0, above half the maximum value -> 1).
        num_classes: K.
        palette: (K, 3) class colours, needed by ``rgb``.
        label_map: ``index`` only: {raw value: class index or 255}; raw values it does not name are ignored.
        reduce_zero_label: ``index`` only: raw 0 -> ignored, k -> k-1 (ADE20K).
        ignore_index: ``index``: the raw value of unlabelled pixels.
        ignore_colors: ``rgb``: colours of unlabelled pixels.
    """

    def __init__(
        self,
        mode: str,
        num_classes: int,
        palette: np.ndarray | None = None,
        label_map: dict[int, int] | None = None,
        reduce_zero_label: bool = False,
        ignore_index: int = IGNORE_INDEX,
        ignore_colors: list[list[int]] | None = None,
    ) -> None:
        self.mode = mode
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.plain = mode == "index" and label_map is None and not reduce_zero_label  # raw value = class
        if mode == "rgb":
            self._codes = _colour_codes(np.asarray(palette).reshape(-1, 3))
            self._ignored = _colour_codes(np.asarray(ignore_colors or [], np.int64).reshape(-1, 3))
        elif mode == "index":
            lut = np.full(65536, -1, np.int32)  # -1: not a class
            if label_map is not None:
                lut[:] = IGNORE_INDEX
                for raw, cls in label_map.items():
                    lut[int(raw)] = cls
            elif reduce_zero_label:
                lut[1 : num_classes + 1] = np.arange(num_classes)
                lut[0] = IGNORE_INDEX
            else:
                lut[:num_classes] = np.arange(num_classes)
            if label_map is None or ignore_index not in label_map:
                lut[ignore_index] = IGNORE_INDEX
            self._lut = lut

    def read(self, path: Path) -> np.ndarray:
        """The mask file: (H, W) values for ``index``/``binary``, (H, W, 3) colours for ``rgb``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mask file not found: {path}")
        try:
            with Image.open(path) as im:
                im.load()  # decodes fully: truncated data raises here
                return self._array(im, path)
        except (OSError, SyntaxError) as e:
            raise ValueError(f"cannot decode mask file {path}: {e}") from e

    def _array(self, im: Image.Image, path: Path) -> np.ndarray:
        if self.mode == "rgb":
            if im.mode in ("L", "I", "I;16", "1"):
                raise ValueError(
                    f"mask {path} is single-channel (PIL mode {im.mode}), not colours: set "
                    "data.mask_mode: index (or binary)"
                )
            return np.asarray(im.convert("RGB"))
        if im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise ValueError(
                    f"mask {path} holds colours (PIL mode {im.mode}), not class indices: set "
                    "data.mask_mode: rgb and data.palette to the class colours"
                )
            return rgb[..., 0]
        if im.mode == "1":  # 1-bit: booleans for binary (their maximum is 1), 0/1 indices otherwise
            return np.asarray(im) if self.mode == "binary" else np.asarray(im, np.uint8)
        return np.asarray(im) if im.mode in ("P", "L") else np.asarray(im).astype(np.int32)

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw values -> train ids (H, W) uint8; raises naming the file and the values that are not classes."""
        if self.mode == "binary":
            top = _maximum(raw)
            if top == 255 and 0 < raw.max() <= 1:
                raise ValueError(
                    f"mask {path} holds only 0 and 1, but data.mask_mode: binary reads 0 and 255 (above "
                    "127 is foreground): for 0/1 masks set data.mask_mode: index"
                )
            return (raw > top / 2).astype(np.uint8)
        if self.mode == "rgb":
            return self._decode_rgb(raw, path)
        if raw.min() < 0 or raw.max() >= len(self._lut):
            raise ValueError(f"mask {path} holds values outside 0-65535")
        out = self._lut[raw]
        if (out < 0).any():
            bad, counts = np.unique(raw[out < 0], return_counts=True)
            raise ValueError(f"mask {path} holds values {_few(bad, counts)} that are not classes: {self._expected()}")
        return out.astype(np.uint8)

    def warnings(self, raw: np.ndarray, path: Path) -> list[str]:
        """What ``segkit data check`` reports without failing: binary masks with values between 0 and the maximum
        (thresholded at half of it, e.g. the grey edges a JPEG or resizing leaves)."""
        if self.mode != "binary":
            return []
        top = _maximum(raw)
        values, counts = np.unique(raw, return_counts=True)
        between = (values != 0) & (values != top)
        if not between.any():
            return []
        return [
            f"binary mask {path} holds values other than 0 and {top}: {_few(values[between], counts[between])} "
            f"(read as foreground above {top / 2:g})"
        ]

    def _expected(self) -> str:
        valid = np.flatnonzero(self._lut >= 0)
        classes = (
            f"the classes are 0-{self.num_classes - 1}"
            if self._lut[0] == 0
            else f"the classes are 1-{self.num_classes} (data.reduce_zero_label)"
        )
        ignored = [int(v) for v in valid if self._lut[v] == IGNORE_INDEX]
        return (
            f"{classes}, ignored: {ignored}; map other values with data.label_map (or, for 0/255 masks, set "
            "data.mask_mode: binary)"
        )

    def _decode_rgb(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        codes = _colour_codes(rgb.reshape(-1, 3))
        order = np.argsort(self._codes)
        at = np.clip(np.searchsorted(self._codes[order], codes), 0, len(order) - 1)
        known = self._codes[order][at] == codes
        ignored = np.isin(codes, self._ignored)
        bad = ~known & ~ignored
        if bad.any():
            colours, counts = np.unique(codes[bad], return_counts=True)
            listed = [tuple(int(c) for c in _colour(code)) for code in colours]
            raise ValueError(
                f"mask {path} holds colours that are not in data.palette: "
                f"{_few(listed, counts, 'pixels')}; add them to data.palette (a class) or "
                "data.ignore_colors"
            )
        out = np.where(known, order[at], IGNORE_INDEX)
        return out.reshape(rgb.shape[:2]).astype(np.uint8)


def _maximum(raw: np.ndarray) -> int:
    """The largest value a mask of this type can hold: 1 (1-bit), 255 (8-bit) or 65535 (16-bit)."""
    return 1 if raw.dtype == np.bool_ else 255 if raw.dtype == np.uint8 else 65535


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def _colour(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def _few(values, counts, unit: str = "pixels", n: int = 8) -> str:
    """The values with their counts, most frequent first, at most ``n`` (and how many more)."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    shown = ", ".join(f"{values[i]} ({int(counts[i])} {unit})" for i in order[:n])
    return shown + (f" and {len(order) - n} more" if len(order) > n else "")
