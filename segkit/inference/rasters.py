"""Segmenting a georeferenced raster (a GeoTIFF) on its own grid, read and written window by window.

For ``scene.tif`` ``segkit predict`` writes, on the scene's grid (the same width, height, CRS and geotransform;
nothing resampled or reprojected), tiled and deflate-compressed:

- ``scene_labels.tif``: the class indices (uint8) with the data set's palette as the colour map, or a multi-label
  model's K bands of 0/1 (one per class, named after it); ``nodata`` (255 by default) where the scene is nodata in
  every band the model reads. The class names are in the file's metadata (``class_names``).
- with ``confidence``, ``scene_confidence.tif``: uint16 bands (value / 65535) of the top class probability and
  the normalized entropy (:func:`~segkit.inference.outputs.confidence_maps`), or a multi-label model's
  probability of each class; the scene's nodata pixels masked (GDAL's mask band).

No overlay is written: a GIS draws the coloured labels over the scene itself, and a full-size picture is what
reading window by window avoids. The scene is never decoded whole: predicted whole (its windows read and joined)
when the memory budget allows, else band by band (:mod:`.tiled`), reading only the windows' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.bands import PIXEL_TYPES
from ..head import Head
from ..io.geotiff import GeoTiffWriter, RasterReader, rasterio_module
from .memory import MemoryPlan
from .outputs import as_uint16, confidence_maps
from .predict import predict_probs
from .tiled import tiled_probs

NODATA = 255
GDAL_CACHE_MB = 256  # GDAL's block cache while a scene is read and written


def raster_paths(folder: Path, image: Path, confidence: bool = False) -> tuple[Path, ...]:
    """The files of a georeferenced ``image`` in ``folder``: its labels, and with ``confidence`` its confidence."""
    paths = (folder / f"{image.stem}_labels.tif",)
    return paths + ((folder / f"{image.stem}_confidence.tif",) if confidence else ())


def predict_raster(
    model: nn.Module,
    path: Path,
    output: Path,
    *,
    transform,
    plan: MemoryPlan,
    palette: np.ndarray,
    class_names: Sequence[str],
    bands: Sequence[int] | None = None,
    pixel_max: int = 255,
    confidence: bool = False,
    nodata: int = NODATA,
    device: str = "cpu",
    say=print,
) -> tuple[Path, ...]:
    """Writes :func:`raster_paths` of the raster ``path`` (its ``bands`` of ``pixel_max``, 255 or 65535, as the
    model's data set reads them) and returns them. ``transform`` normalizes a window as the data set's evaluation
    does; ``plan`` says whether the scene is predicted whole or band by band (said with ``say``), and at which
    test-time settings."""
    head = Head.of(model)
    multilabel = head.mode == "multilabel"
    k = head.num_classes
    if nodata < (2 if multilabel else k):
        raise ValueError(f"nodata {nodata} is a label the model predicts: choose one of {2 if multilabel else k}-255")
    # GDAL caches blocks up to 5% of the machine's memory by default; the windows need a few rows of blocks
    with rasterio_module().Env(GDAL_CACHEMAX=GDAL_CACHE_MB), RasterReader(path, bands) as raster:
        if PIXEL_TYPES[raster.dtype] != pixel_max:
            raise ValueError(
                f"{path} has {raster.dtype} bands; the model reads {'8' if pixel_max == 255 else '16'}-bit images"
            )
        h, w = raster.height, raster.width
        files = raster_paths(output, path, confidence)
        names = list(class_names)
        labels = GeoTiffWriter(
            files[0],
            raster.grid,
            count=k if multilabel else 1,
            nodata=nodata,
            palette=None if multilabel else np.asarray(palette, np.uint8)[:256],
            band_names=names if multilabel else ["class"],
            tags={"class_names": names, "head": head.mode},
        )
        writers = [labels]
        if confidence:
            band_names = names if multilabel else ["confidence", "entropy"]
            count = len(band_names)
            writers.append(GeoTiffWriter(files[1], raster.grid, count=count, dtype="uint16", band_names=band_names))

        def write(y0: int, probs: torch.Tensor) -> None:
            """The files' rows from ``y0``: ``probs`` (K, rows, width)."""
            missing = raster.nodata_rows(y0, y0 + probs.shape[1])
            decided = head.decide(probs[None])[0].cpu().numpy().astype(np.uint8)
            if multilabel:
                decided[:, missing] = nodata
            else:
                decided[missing] = nodata
            labels.write(y0, decided)
            if confidence:
                maps = as_uint16(probs) if multilabel else np.stack(confidence_maps(probs))
                writers[1].write(y0, maps, missing=missing)

        try:
            model = model.to(device).eval()
            if plan.tiled(h, w):
                say(plan.describe(path.name, h, w, raster=True))

                def read(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
                    return transform(image=raster.read(y0, y1, x0, x1))["image"][None].to(device)

                for y0, probs in tiled_probs(model, read, h, w, **plan.tile_options):
                    write(y0, probs)
            else:
                x = transform(image=raster.read(0, h, 0, w))["image"][None].to(device)
                write(0, predict_probs(model, x, **plan.settings.options())[0])
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        return tuple(writer.close() for writer in writers)
