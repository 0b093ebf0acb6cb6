"""Images of any number of bands at 8 or 16 bits: GeoTIFF/TIFF through tifffile, PNG (single-channel, 8 or 16
bit, or colour) and JPEG through OpenCV; the bands chosen by index.

A multi-band image is ``(H, W, C)`` uint8 or uint16, its values as stored: no conversion to 8 bits, no
colour reordering beyond OpenCV's BGR -> RGB for colour PNG and JPEG files. Normalization divides by the
type's maximum (255 or 65535, :func:`pixel_max`) and then applies the per-band mean and std, in the units of
the RGB configs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .base import _check_complete, read_image

TIFF_SUFFIXES = (".tif", ".tiff")
PIXEL_TYPES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


@dataclass(frozen=True)
class BandHeader:
    """What a file's header says: size, band count and pixel type, read without decoding the pixels."""

    height: int
    width: int
    bands: int
    dtype: np.dtype


def pixel_max(dtype) -> int:
    """The largest value of a pixel type segkit reads (255 or 65535); other types are refused."""
    try:
        return PIXEL_TYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"{np.dtype(dtype)} pixels; segkit reads 8-bit and 16-bit unsigned images") from None


def read_header(path: Path) -> BandHeader:
    """The :class:`BandHeader` of an image file; raises naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes = _image_axes(series.shape, series.axes, path)
                return BandHeader(*shape, series.dtype)
        with Image.open(path) as im:
            bands = len(im.getbands())
            wide = im.mode.startswith("I;16") or im.mode == "I"
            return BandHeader(im.height, im.width, bands, np.dtype(np.uint16 if wide else np.uint8))
    except (OSError, SyntaxError, ValueError) as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot read the header of image file {path}: {e}") from None


def _image_axes(shape: Sequence[int], axes: str, path: Path) -> tuple[tuple[int, int, int], str]:
    """(height, width, bands) of a TIFF series and its axes; a series with more than one axis besides Y and X
    (a time series, a z-stack of multi-band pages) is refused."""
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"image file {path} holds a {axes} series ({list(shape)}), not an image with Y and X axes")
    others = [a for a in axes if a not in "YX"]
    if len(others) > 1:
        raise ValueError(
            f"image file {path} holds a {axes} series of shape {list(shape)}: one image of bands was expected "
            "(Y, X and one band axis)"
        )
    size = dict(zip(axes, shape))
    bands = size[others[0]] if others else 1
    return (size["Y"], size["X"], bands), axes


def read_bands(path: Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """The image (H, W, C) uint8 or uint16 with the bands ``bands`` (indices into the file's bands, in that
    order; None: all); raises naming the file when it is missing, truncated, undecodable or of another type."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.suffix.lower() in TIFF_SUFFIXES:
        image = _read_tiff(path)
    else:
        data = path.read_bytes()
        _check_complete(path, data)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"cannot decode image file: {path}")
        if image.ndim == 3 and image.shape[2] in (3, 4):  # OpenCV's BGR(A) -> RGB(A)
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype not in PIXEL_TYPES:
        raise ValueError(f"image file {path} has {image.dtype} pixels; segkit reads 8-bit and 16-bit unsigned images")
    if bands is None:
        return image
    bad = [b for b in bands if not 0 <= b < image.shape[2]]
    if bad:
        raise ValueError(
            f"image file {path} has {image.shape[2]} band(s) (0-{image.shape[2] - 1}); data.bands asks for {bad}"
        )
    if list(bands) == list(range(image.shape[2])):
        return image
    return np.ascontiguousarray(image[..., list(bands)])


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _, axes = _image_axes(series.shape, series.axes, path)
            image = series.asarray()
    except (tifffile.TiffFileError, ValueError, OSError) as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot decode image file {path}: {e}") from None
    others = [i for i, a in enumerate(axes) if a not in "YX"]
    order = [axes.index("Y"), axes.index("X"), *others]
    return np.ascontiguousarray(image.transpose(order)) if order != sorted(order) else image


def display_image(image: np.ndarray, bands: Sequence[int] = (0, 1, 2), max_value: int = 255) -> np.ndarray:
    """The RGB uint8 picture of an image of bands (overlays, W&B panels): the three ``bands`` as red, green and
    blue. 8-bit bands are shown as they are; 16-bit bands are stretched one by one from their 2nd to their
    98th percentile (the cumulative cut GIS viewers default to), since sensors fill a small part of the range."""
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and tuple(bands) == (0, 1, 2):
        return image  # RGB as it is (no copy of a large image)
    picture = image[..., list(bands)] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    if picture.dtype == np.uint8 and max_value == 255:
        return np.ascontiguousarray(picture)
    out = np.empty(picture.shape, np.uint8)
    sample = picture[:: max(1, picture.shape[0] // 512), :: max(1, picture.shape[1] // 512)]
    for c in range(3):
        lo, hi = np.percentile(sample[..., c], (2, 98))
        scale = 255.0 / max(float(hi - lo), 1e-6)
        out[..., c] = np.clip((picture[..., c].astype(np.float32) - lo) * scale, 0, 255).round()
    return out


class Bands:
    """Reads the images of a multi-band data set: which bands (``chosen``, None: all ``count`` of each file) and
    the pixel type every image must share (``dtype``, or that of the first image read)."""

    def __init__(self, count: int, chosen: list[int] | None, dtype=None) -> None:
        self.count, self.chosen = count, chosen
        self.dtype: np.dtype | None = None if dtype is None else np.dtype(dtype)
        self.first: Path | None = None
        self.file_bands: int | None = None

    def check_header(self, path: Path, header: BandHeader) -> None:
        """Raises naming ``path`` when its bands or pixel type differ from the other images'."""
        if self.chosen is None and header.bands != self.count:
            raise ValueError(
                f"image {path} has {header.bands} band(s); data.in_channels is {self.count} (or choose bands "
                "with data.bands)"
            )
        if self.chosen is not None and header.bands <= max(self.chosen):
            raise ValueError(f"image {path} has {header.bands} band(s); data.bands asks for {self.chosen}")
        if self.file_bands is not None and header.bands != self.file_bands:
            raise ValueError(
                f"image {path} has {header.bands} bands, {self.first} has {self.file_bands}: every image must have "
                "the same bands"
            )
        self.check(path, header.dtype)
        self.file_bands = header.bands

    def __call__(self, path: Path) -> np.ndarray:
        """The image file's chosen bands, checked against the others' pixel type."""
        image = read_bands(path, self.chosen)
        if self.chosen is None and image.shape[2] != self.count:
            raise ValueError(f"image {path} has {image.shape[2]} band(s); data.in_channels is {self.count}")
        self.check(path, image.dtype)
        return image

    def check(self, path: Path, dtype) -> None:
        if self.dtype is None:
            self.dtype, self.first = np.dtype(dtype), Path(path)
        elif np.dtype(dtype) != self.dtype:
            source = f"{self.first} has" if self.first is not None else "the model was trained on"
            raise ValueError(
                f"image {path} has {np.dtype(dtype)} pixels, {source} {self.dtype}: every image must have the "
                "same pixel type"
            )


@dataclass(frozen=True)
class ImageFormat:
    """How a model's input images are read, normalized and shown: what a segkit checkpoint records of its data
    (``segkit_data``; :meth:`SegmentationDataModule.inference_record`), for prediction without the data set."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_max: int = 255
    in_channels: int = 3
    bands: tuple[int, ...] | None = None
    display_bands: tuple[int, int, int] = (0, 1, 2)

    @classmethod
    def from_record(cls, record: dict) -> ImageFormat:
        """From a checkpoint's record (one written before bands were recorded is RGB)."""
        bands = record.get("bands")
        return cls(
            tuple(record["mean"]),
            tuple(record["std"]),
            int(record.get("pixel_max", 255)),
            int(record.get("in_channels", len(record["mean"]))),
            None if bands is None else tuple(bands),
            tuple(record.get("display_bands", (0, 1, 2))),
        )

    @property
    def rgb(self) -> bool:
        return self.in_channels == 3 and self.bands is None

    def reader(self):
        """path -> image, picklable (DataLoader workers): RGB as :func:`read_image` reads it, or the bands."""
        if self.rgb:
            return read_image
        dtype = np.uint16 if self.pixel_max == 65535 else np.uint8
        return Bands(self.in_channels, None if self.bands is None else list(self.bands), dtype)

    def display(self, image: np.ndarray) -> np.ndarray:
        return display_image(image, self.display_bands, self.pixel_max)
