"""Georeferenced rasters: read window by window and written on a raster's grid, through rasterio (GDAL), the
optional extra ``segkit[geo]``.

A raster is georeferenced when its file places its pixels on the Earth: a coordinate reference system (CRS) or
a geotransform other than the identity (GeoTIFF tags, or GDAL's other formats). Such a file is never decoded
whole here: :class:`RasterReader` reads the rows and columns asked for (of a tiled or striped TIFF, the blocks
that hold them), and :class:`GeoTiffWriter` writes rows as they are decided, so neither holds a full-size array.

Written files are on the input's grid (the same width, height, CRS and geotransform: no resampling, no
reprojection), tiled 256 x 256 and deflate-compressed, GeoTIFF's own layout that GIS tools read in windows too.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .disk import DiskFullError, free_bytes, is_disk_full

GEO_EXTRA = "pip install 'segkit[geo]'"
TIFF_SUFFIXES = (".tif", ".tiff")
# the GeoTIFF tags that place a raster: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory
GEO_TAGS = (33550, 33922, 34264, 34735)


def rasterio_module():
    """rasterio, or an ImportError that says how to install it."""
    try:
        import rasterio
    except ImportError:
        raise ImportError(f"georeferenced rasters are read and written with rasterio: {GEO_EXTRA}") from None
    return rasterio


def has_geotags(path: Path) -> bool:
    """Whether a TIFF file carries GeoTIFF tags (read by tifffile from its first page's header, no rasterio)."""
    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return any(tag in tif.pages[0].tags for tag in GEO_TAGS)
    except Exception:  # noqa: BLE001 - an unreadable file is reported where it is read
        return False


def grid_tags(path: Path) -> dict[int, tuple] | None:
    """A TIFF's GeoTIFF tags (pixel scale, tiepoints, transformation, GeoKeys: where its pixels lie and in which
    CRS), read by tifffile, or None for a file without them."""
    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        found = {code: tags[code].value for code in GEO_TAGS if code in tags}
    return {code: tuple(np.ravel(value).tolist()) for code, value in found.items()} or None


def check_same_grid(image: Path, mask: Path) -> None:
    """Raises, in one line, when a georeferenced image and its georeferenced mask lie on different grids (another
    CRS, pixel size or origin: the mask's labels would be those of other places). Either without GeoTIFF tags:
    nothing to compare."""
    a, b = grid_tags(image), grid_tags(mask)
    if a is None or b is None or a == b:
        return
    names = {33550: "pixel size", 33922: "origin (tiepoint)", 34264: "geotransform", 34735: "CRS (GeoKeys)"}
    differ = [names[code] for code in GEO_TAGS if a.get(code) != b.get(code)]
    raise ValueError(
        f"image {image} and mask {mask} lie on different grids ({', '.join(differ)} differ): resample the mask "
        "onto the image's grid (e.g. gdalwarp -te ... -tr ...)"
    )


class RasterReader:
    """An open raster, read window by window: ``bands`` (indices into its bands, in that order; None: all), of
    8 or 16 bits. ``height``, ``width``, ``dtype``, ``nodata`` (the file's nodata value, or None) and its
    ``grid`` (what a file on the same grid copies: size, CRS, geotransform)."""

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None) -> None:
        rasterio = rasterio_module()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"image file not found: {self.path}")
        try:
            self.src = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as e:
            raise ValueError(f"cannot read raster file {self.path}: {e}") from None
        count = self.src.count
        self.bands = list(range(count)) if bands is None else list(bands)
        bad = [b for b in self.bands if not 0 <= b < count]
        if bad:
            self.close()
            raise ValueError(f"raster file {self.path} has {count} band(s) (0-{count - 1}); data.bands asks for {bad}")
        dtypes = {self.src.dtypes[b] for b in self.bands}
        if len(dtypes) != 1 or next(iter(dtypes)) not in ("uint8", "uint16"):
            self.close()
            raise ValueError(
                f"raster file {self.path} has {', '.join(sorted(dtypes))} bands; segkit reads 8-bit and 16-bit unsigned"
                " images"
            )
        self.dtype = np.dtype(next(iter(dtypes)))
        self.height, self.width = self.src.height, self.src.width
        self.nodata = self.src.nodata
        self.grid = {"width": self.width, "height": self.height, "crs": self.src.crs, "transform": self.src.transform}

    @property
    def georeferenced(self) -> bool:
        """Whether the file places its pixels: a CRS, or a geotransform other than the identity."""
        return self.src.crs is not None or not self.src.transform.is_identity

    def _window(self, y0: int, y1: int, x0: int, x1: int):
        from rasterio.windows import Window

        return Window(x0, y0, x1 - x0, y1 - y0)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1`` and columns ``x0:x1`` of the chosen bands, (h, w, C) as stored."""
        try:
            data = self.src.read([b + 1 for b in self.bands], window=self._window(y0, y1, x0, x1))
        except Exception as e:  # noqa: BLE001 - GDAL reports a corrupt block in its own words
            raise ValueError(f"cannot read rows {y0}-{y1} of raster file {self.path}: {e}") from None
        return np.ascontiguousarray(data.transpose(1, 2, 0))

    def nodata_rows(self, y0: int, y1: int) -> np.ndarray:
        """(rows, width) booleans: the pixels of rows ``y0:y1`` that are nodata in every chosen band (GDAL's masks:
        the file's nodata value, or its mask band); all False for a file that declares none."""
        masks = self.src.read_masks([b + 1 for b in self.bands], window=self._window(y0, y1, 0, self.width))
        return (masks == 0).all(0)

    def close(self) -> None:
        self.src.close()

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GeoTiffWriter:
    """A new GeoTIFF of ``count`` bands of ``dtype`` on ``grid`` (:attr:`RasterReader.grid`), filled rows at a time
    by :meth:`write` and made whole by :meth:`close`: it is written as ``<name>.partial`` and renamed, so a file of
    that name is complete or absent (a full disk, an error, an interrupted run leave none).

    ``nodata``: the value that marks pixels without data; ``palette`` (K, 3): the colour map of a one-band file
    of class indices; ``band_names``: each band's description (its class); ``tags``: metadata (JSON values).
    """

    def __init__(
        self,
        path: str | Path,
        grid: dict,
        *,
        count: int = 1,
        dtype: str = "uint8",
        nodata: float | None = None,
        palette: np.ndarray | None = None,
        band_names: Sequence[str] | None = None,
        tags: dict | None = None,
    ) -> None:
        rasterio = rasterio_module()
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.width = grid["width"]
        profile = {
            "driver": "GTiff",
            "count": count,
            "dtype": dtype,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",  # above 4 GB a classic TIFF cannot address its blocks
            **grid,
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning for a grid without a CRS
                self.dst = rasterio.open(self.partial, "w", **profile)
            if palette is not None:
                self.dst.write_colormap(1, {i: tuple(int(c) for c in palette[i]) for i in range(len(palette))})
            for i, name in enumerate(band_names or []):
                self.dst.set_band_description(i + 1, name)
            if tags:
                self.dst.update_tags(**{k: json.dumps(v) for k, v in tags.items()})
        except Exception as e:
            self._remove()
            raise self._error(e) from None

    def write(self, y0: int, rows: np.ndarray, missing: np.ndarray | None = None) -> None:
        """Rows from ``y0``: (rows, width) for one band, (count, rows, width) for several; ``missing`` (rows,
        width) booleans: pixels without data, masked in the file's mask band (GDAL's per-dataset mask)."""
        from rasterio.windows import Window

        rows = rows[None] if rows.ndim == 2 else rows
        window = Window(0, y0, self.width, rows.shape[1])
        try:
            self.dst.write(rows, window=window)
            if missing is not None:
                self.dst.write_mask(np.where(missing, 0, 255).astype(np.uint8), window=window)
        except Exception as e:
            error = self._error(e, rows.nbytes)  # before the partial file's space is freed
            self.abort()
            raise error from None

    def close(self) -> Path:
        """Finishes the file (its last blocks written) and gives it its name."""
        try:
            self.dst.close()
            os.replace(self.partial, self.path)
        except Exception as e:
            error = self._error(e, 2**20)
            self._remove()
            raise error from None
        return self.path

    def abort(self) -> None:
        """Leaves no file: the partial one is closed and removed."""
        try:
            self.dst.close()
        except Exception:  # noqa: BLE001 - a file that cannot be finished is removed all the same
            pass
        self._remove()

    def _remove(self) -> None:
        self.partial.unlink(missing_ok=True)

    def _error(self, error: Exception, needed: int = 0) -> Exception:
        """A full disk as :class:`~segkit.io.disk.DiskFullError` (GDAL says only "write failed": the free space
        below what was being written tells), any other failure as an OSError naming the file."""
        free = free_bytes(self.path)
        if is_disk_full(error) or free < needed:
            return DiskFullError(self.path, None, free)
        return OSError(f"cannot write {self.path}: {error}")
