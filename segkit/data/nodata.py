"""Nodata: the pixels of an image that hold no measurement (a satellite scene's border, a masked cloud), marked by
a value in its bands. They are left out of training and scoring as unlabelled pixels are (their ground truth
becomes 255, ignored by the loss and the counts) and out of the band statistics that ``segkit data check``
prints for normalization.

The value is the data set's (``data.nodata``) or each file's own: the GDAL_NODATA tag of a GeoTIFF, which GDAL,
rasterio and QGIS write and read. A pixel is nodata when the value is in every band read (``all``, GDAL's own
rule for a per-dataset nodata value) or in any of them (``any``, for sensors that lose one band at a time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GDAL_NODATA = 42113  # the TIFF tag (ASCII) that holds a GeoTIFF's nodata value
RULES = ("all", "any")


def file_nodata(path: Path) -> float | None:
    """A TIFF file's own nodata value (its GDAL_NODATA tag), or None (no tag, or not a TIFF)."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(GDAL_NODATA)
    if tag is None:
        return None
    try:
        return float(str(tag.value).strip("\x00 "))
    except ValueError:
        raise ValueError(f"image file {path} has a GDAL_NODATA tag that is not a number: {tag.value!r}") from None


class Nodata:
    """Which pixels of an image are nodata: ``value`` a number, ``"file"`` (each file's own, :func:`file_nodata`)
    or None (none are); ``bands``: ``all`` (the value in every band) or ``any``."""

    def __init__(self, value: float | str | None = "file", bands: str = "all") -> None:
        if isinstance(value, str) and value != "file":
            raise ValueError(f"data.nodata is a pixel value, 'file' (each file's own) or null, got {value!r}")
        if bands not in RULES:
            raise ValueError(f"data.nodata_bands is one of {', '.join(RULES)}, got {bands!r}")
        self.value, self.bands = value, bands
        self._of_file: dict[Path, float | None] = {}

    def value_of(self, path: Path) -> float | None:
        if self.value != "file":
            return self.value
        if path not in self._of_file:
            self._of_file[path] = file_nodata(path)
        return self._of_file[path]

    def pixels(self, image: np.ndarray, path: Path) -> np.ndarray | None:
        """(H, W) booleans: the nodata pixels of ``image`` (H, W, C) read from ``path``; None when it has no value."""
        value = self.value_of(Path(path))
        if value is None:
            return None
        hits = image == value if image.ndim == 3 else (image == value)[..., None]
        return hits.all(-1) if self.bands == "all" else hits.any(-1)
