"""albumentations pipelines of the DeepLab recipe.

Train (official DeepLab ``input_preprocess``): random scale in [0.5, 2.0] (bilinear image, nearest mask; with a
step, one of 0.5, 0.75, ..., 2.0 as official train.py draws it), pad to the crop size at the bottom/right with
the mean pixel (mask with 255, ignored), random crop, random horizontal flip, normalize. Eval: the full image,
normalize only; labels are never resized.

Two extras, off by default (mmsegmentation's ``cat_max_ratio`` and ``PhotoMetricDistortion`` in spirit):
``cat_max_ratio`` < 1 retries the random crop (up to 10 draws) while one class fills more than that share of
its labelled pixels, or it holds a single class, as mmsegmentation's ``RandomCrop`` does; ``photometric``
adds, after the flip, a colour jitter (brightness +-0.125, contrast and saturation 0.5-1.5, hue +-0.05,
each image with probability 0.5) and a Gaussian blur (3 or 5 px, probability 0.1) for 8-bit RGB, and for
other bands an independent brightness (+-0.125 of the maximum) and contrast (0.5-1.5) per band, probability
0.5. Every draw comes from the pipeline's own seeded generators, so a seed gives the same images on any number
of processes and workers.

Images have any number of bands, 8 or 16 bits: ``mean`` and ``std`` hold one value per band, in units of the
type's maximum ``max_value`` (255 or 65535), as ``x = (pixel / max_value - mean) / std``.

The scaled size is the official one (sides rounded down); the interpolation is OpenCV's (pixel centres), where
the official pipeline aligns corners: a sub-pixel shift of an augmented image, kept for OpenCV's speed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from .base import IGNORE_INDEX  # noqa: E402

# Inception-style normalization of the TF-trained Xception weights (timm xception*.tf_in1k): x / 127.5 - 1.
XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)


def official_scales(lo: float, hi: float, step: float) -> list[float]:
    """The scales official DeepLab draws from with equal probability (``preprocess_utils.get_random_scale``):
    ``linspace(lo, hi, int((hi - lo) / step + 1))``."""
    return [float(s) for s in np.linspace(lo, hi, int((hi - lo) / step + 1))]


class PadBottomRight(A.DualTransform):
    """Pads an image to at least ``size`` x ``size`` at the bottom and right with ``fill`` (one value per band,
    rounded for integer images) and its mask with ``fill_mask``: :class:`albumentations.PadIfNeeded` with
    ``position="top_left"`` (equal output for RGB), for any number of bands (OpenCV's border fill takes at most
    four values)."""

    def __init__(self, size: int, fill: Sequence[float], fill_mask: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size, self.fill, self.fill_mask = size, tuple(fill), fill_mask

    def _pad(self, array: np.ndarray, fill) -> np.ndarray:
        h, w = array.shape[:2]
        if h >= self.size and w >= self.size:
            return array
        out = np.empty((max(h, self.size), max(w, self.size), *array.shape[2:]), array.dtype)
        out[...] = fill
        out[:h, :w] = array
        return out

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        fill = np.asarray(self.fill, np.float64)
        if np.issubdtype(img.dtype, np.integer):
            fill = np.clip(np.rint(fill), 0, np.iinfo(img.dtype).max)
        return self._pad(img, fill.astype(img.dtype))

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return self._pad(mask, self.fill_mask)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "fill", "fill_mask")


class RareClassCrop(A.RandomCrop):
    """:class:`albumentations.RandomCrop` that draws again (at most ``tries`` draws) while one class fills more
    than ``cat_max_ratio`` of the crop's labelled pixels or the crop holds one class only; the last draw stands
    (mmsegmentation's ``RandomCrop(cat_max_ratio=...)``)."""

    cat_max_ratio: float = 1.0
    tries: int = 10

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        mask = data.get("mask")
        if self.cat_max_ratio >= 1 or mask is None or mask.ndim != 2:  # off: one draw, as RandomCrop draws
            return super().get_params_dependent_on_data(params, data)
        for _ in range(self.tries):
            chosen = super().get_params_dependent_on_data(params, data)
            x0, y0, x1, y1 = chosen["crop_coords"]
            counts = np.bincount(mask[y0:y1, x0:x1].ravel(), minlength=256)[:IGNORE_INDEX]
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return chosen


class BandBrightnessContrast(A.ImageOnlyTransform):
    """Brightness and contrast drawn for each band on its own: ``pixel * contrast + brightness * max_value``,
    contrast in [1 - ``contrast``, 1 + ``contrast``], brightness in [-``brightness``, ``brightness``], clipped to
    the pixel type (8 or 16 bits, any number of bands)."""

    def __init__(self, brightness: float, contrast: float, max_value: float, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.brightness, self.contrast, self.max_value = brightness, contrast, max_value

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        bands = data["image"].shape[2] if data["image"].ndim == 3 else 1
        rng = self.random_generator
        return {
            "alpha": rng.uniform(1 - self.contrast, 1 + self.contrast, bands),
            "beta": rng.uniform(-self.brightness, self.brightness, bands) * self.max_value,
        }

    def apply(self, img: np.ndarray, alpha: np.ndarray, beta: np.ndarray, **params) -> np.ndarray:
        out = img.astype(np.float32) * alpha.astype(np.float32) + beta.astype(np.float32)
        return np.clip(np.rint(out), 0, np.iinfo(img.dtype).max).astype(img.dtype)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "max_value")


def photometric_transforms(bands: int, max_value: float) -> list[A.BasicTransform]:
    """The ``photometric`` extras (module doc): colour jitter and blur for 8-bit RGB, else per-band brightness
    and contrast."""
    if bands == 3 and max_value == 255:
        return [
            A.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05, p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
        ]
    return [BandBrightnessContrast(0.125, 0.5, max_value, p=0.5)]


class Normalize(A.Normalize):
    """:class:`albumentations.Normalize`; images of more than 8 bits in float32 numpy operations, 2-3x faster
    than albucore's path for them (18 against 7 ms for 4 bands of 512 x 512 at 16 bits, equal values)."""

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        if img.dtype == np.uint8:
            return super().apply(img, **params)
        scale = 1.0 / (np.asarray(self.std, np.float32) * np.float32(self.max_pixel_value))
        out = img.astype(np.float32)
        out -= np.asarray(self.mean, np.float32) * np.float32(self.max_pixel_value)
        out *= scale
        return out


class SteppedRandomScale(A.RandomScale):
    """:class:`albumentations.RandomScale` drawing one of :attr:`scales` (its own seeded generator, as the others)."""

    scales: Sequence[float] = (1.0,)

    def get_params(self) -> dict[str, float]:
        return {"scale": self.py_random.choice(self.scales)}


def train_transform(
    crop_size: int,
    scale_range: Sequence[float] = (0.5, 2.0),
    mean: Sequence[float] = XCEPTION_MEAN,
    std: Sequence[float] = XCEPTION_STD,
    scale_step: float = 0.0,
    max_value: float = 255.0,
    cat_max_ratio: float = 1.0,
    photometric: bool = False,
) -> A.Compose:
    """``scale_step`` 0: scales uniform in ``scale_range``; > 0: one of :func:`official_scales` (train.py's
    ``--scale_factor_step_size``, 0.25 by default there); ``max_value``: the pixel type's maximum;
    ``cat_max_ratio`` and ``photometric``: the extras of the module doc (off: 1.0 and False)."""
    if not 0 < cat_max_ratio <= 1:
        raise ValueError(
            f"data.cat_max_ratio must be in (0, 1] (1: off; mmsegmentation uses 0.75), got {cat_max_ratio}"
        )
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"data.scale_range must be (min, max) with 0 < min <= max, got {list(scale_range)}")
    if scale_step < 0:
        raise ValueError(f"data.scale_step must be >= 0 (0: any scale in data.scale_range), got {scale_step}")
    stepped = scale_step > 0 and lo < hi
    scale = (SteppedRandomScale if stepped else A.RandomScale)(
        scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=1.0
    )
    if stepped:
        scale.scales = official_scales(lo, hi, scale_step)
    mean_pixel = tuple(max_value * m for m in mean)  # 0 after normalization
    crop = RareClassCrop(crop_size, crop_size)
    crop.cat_max_ratio = cat_max_ratio
    extras = photometric_transforms(len(mean), max_value) if photometric else []
    # the extras come after the flip: the transforms before them keep their seeds (seed_transform numbers them)
    return A.Compose(
        [
            scale,
            PadBottomRight(crop_size, mean_pixel, IGNORE_INDEX),
            crop,
            A.HorizontalFlip(p=0.5),
            *extras,
            Normalize(mean=mean, std=std, max_pixel_value=max_value),
            ToTensorV2(),
        ]
    )


def eval_transform(
    mean: Sequence[float] = XCEPTION_MEAN, std: Sequence[float] = XCEPTION_STD, max_value: float = 255.0
) -> A.Compose:
    return A.Compose([Normalize(mean=mean, std=std, max_pixel_value=max_value), ToTensorV2()])


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Seeds an albumentations pipeline: the pipeline with ``seed``, its transform ``i`` with ``seed * 256 + i``.

    albumentations draws from generators of its own, not the global ones, and its ``set_random_seed`` gives
    every transform of a pipeline the same seed, so their draws coincide: seeded that way, an image of the
    training pipeline was flipped exactly when its random scale was below 1.25. Distinct seeds per transform
    keep the draws independent.
    """
    transform.set_random_seed(seed)
    for i, t in enumerate(transform.transforms):
        t.set_random_seed(seed * 256 + i)
