"""Georeferenced scenes (GeoTIFFs written here with rasterio: a projected CRS, a geotransform, a nodata border)
segmented on their own grid: the labels open in rasterio on the scene's grid, equal the prediction of the same
pixels without georeferencing, are nodata where the scene is, and are read and written window by window."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import cli, run_here, segkit_here
from PIL import Image

from segkit import Segmenter
from segkit.inference import rasters as rasters_module
from segkit.inference.memory import ModelFootprint
from segkit.io.disk import DiskFullError
from segkit.io.geotiff import GeoTiffWriter, RasterReader, has_geotags

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

BORDER = 12  # columns of nodata on the scene's left


def _scene(run, path, height=150, width=200, georeferenced=True) -> np.ndarray:
    """An RGB GeoTIFF (UTM zone 33N, 10 m pixels, nodata 0 on the left border) of the run's first image tiled to
    ``height`` x ``width``; returns its pixels."""
    image = np.asarray(Image.open(sorted((run.data / "images").rglob("*.jpg"))[0]).convert("RGB"))
    reps = (height // image.shape[0] + 1, width // image.shape[1] + 1, 1)
    pixels = np.tile(image, reps)[:height, :width].copy()
    pixels[pixels == 0] = 1  # 0 is nodata: no real pixel holds it in every band
    pixels[:, :BORDER] = 0
    if not georeferenced:
        tifffile.imwrite(path, pixels)  # a plain TIFF: no GeoTIFF tags
        return pixels
    geo = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 500000, 0, -10, 4500000)}
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile, **geo, nodata=0, tiled=True) as dst:
        dst.write(pixels.transpose(2, 0, 1))
    return pixels


def _predict(capsys, run, scene, output, *extra):
    argv = cli("predict", *run.args, ckpt_path=run.model, input=scene, output=output, num_workers=0)
    return segkit_here(capsys, *argv, *extra)


def test_a_scene_is_labelled_on_its_grid_with_its_nodata(head_run, tmp_path, capsys):
    """The labels: same size, CRS and geotransform, tiled and deflate-compressed, the classes' colours and names;
    equal to Segmenter's labels of the same pixels given as an array, and nodata (255) on the border."""
    scene = tmp_path / "scene.tif"
    pixels = _scene(head_run, scene)
    assert has_geotags(scene)
    _predict(capsys, head_run, scene, tmp_path / "out", "--confidence")
    segmenter = Segmenter(head_run.model, batch_size=1)
    want = np.asarray(segmenter(pixels)).astype(np.uint8)  # (H, W), or a multi-label model's (K, H, W)
    with rasterio.open(tmp_path / "out" / "scene_labels.tif") as labels, rasterio.open(scene) as source:
        assert (labels.crs, labels.transform, labels.shape) == (source.crs, source.transform, source.shape)
        assert labels.profile["tiled"] and labels.profile["compress"] == "deflate" and labels.nodata == 255
        got = labels.read()
        tags = labels.tags()
        if head_run.head == "multilabel":
            assert labels.descriptions == tuple(segmenter.class_names)
        else:
            got = got[0]
            assert labels.colormap(1)[1][:3] == tuple(segmenter.palette[1])
    assert json.loads(tags["class_names"]) == segmenter.class_names
    inside = np.s_[..., :, BORDER:]
    assert (got[..., :, :BORDER] == 255).all()
    assert np.array_equal(got[inside], want[inside])
    with rasterio.open(tmp_path / "out" / "scene_confidence.tif") as confidence:
        assert confidence.dtypes[0] == "uint16" and confidence.shape == pixels.shape[:2]
        valid = confidence.read_masks(1)
        assert (valid[:, :BORDER] == 0).all() and (valid[:, BORDER:] == 255).all()


def test_a_scene_above_the_budget_is_read_and_written_window_by_window(multiclass_run, tmp_path, capsys, monkeypatch):
    """Under a budget below what the scene needs whole, no read covers the scene: it is read in the windows'
    rows and columns, and its labels equal the in-memory sliding window's of the same pixels."""
    run, window = multiclass_run, 48
    scene = tmp_path / "scene.tif"
    pixels = _scene(run, scene, 180, 220)
    footprint = ModelFootprint.measure(Segmenter(run.model).model)
    whole = footprint.whole_image_bytes(180, 220, (1.0,), False, window)
    tiled = footprint.tiled_bytes(180, 220, window, full_size=False)
    assert tiled < whole
    reads = []
    real_read = RasterReader.read

    def read(self, y0, y1, x0, x1):
        reads.append((y1 - y0) * (x1 - x0))
        return real_read(self, y0, y1, x0, x1)

    monkeypatch.setattr(RasterReader, "read", read)
    out = _predict(
        capsys, run, scene, tmp_path / "out", "--memory_budget", str((tiled + whole) // 2), "--window", str(window)
    )
    assert "band by band" in out, out
    assert max(reads) <= window * window < 180 * 220
    want = np.asarray(Segmenter(run.model, window=window)(pixels))
    with rasterio.open(tmp_path / "out" / "scene_labels.tif") as labels:
        got = labels.read(1)
    assert (got[:, :BORDER] == 255).all()
    assert np.array_equal(got[:, BORDER:], want[:, BORDER:])


def test_a_tiff_without_georeferencing_keeps_the_png_outputs(multiclass_run, tmp_path, capsys):
    scene = tmp_path / "plain.tif"
    _scene(multiclass_run, scene, georeferenced=False)
    assert not has_geotags(scene)
    _predict(capsys, multiclass_run, scene, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plain.png", "plain_overlay.jpg"]


def test_nodata_that_is_a_class_is_refused_in_one_line(multiclass_run, tmp_path, capsys):
    scene = tmp_path / "scene.tif"
    _scene(multiclass_run, scene)
    argv = cli("predict", *multiclass_run.args, ckpt_path=multiclass_run.model, input=scene, output=tmp_path / "o")
    proc = run_here(capsys, *argv, "--nodata", "1", "--num_workers", "0")
    assert proc.returncode == 1 and "nodata 1 is a label the model predicts" in proc.stderr, proc.stderr
    assert not list((tmp_path / "o").glob("*.tif*"))


def test_a_full_disk_leaves_no_geotiff(small_disk):
    """Incompressible bands (4 MB) on a 2 MB disk: a DiskFullError naming the file, and no file or partial."""
    folder = small_disk
    grid = {"width": 1024, "height": 1024, "crs": CRS.from_epsg(32633), "transform": Affine(1, 0, 0, 0, -1, 0)}
    writer = GeoTiffWriter(folder / "big.tif", grid, count=2, dtype="uint16")
    noise = np.random.default_rng(0).integers(0, 65535, (2, 256, 1024), dtype=np.uint16)
    with pytest.raises(DiskFullError, match="big.tif"):
        for y0 in range(0, 1024, 256):
            writer.write(y0, noise)
        writer.close()
    assert list(folder.iterdir()) == []


def test_the_files_of_a_scene_are_named_after_it():
    paths = rasters_module.raster_paths(Path("out"), Path("scenes/scene.tif"), confidence=True)
    assert paths == (Path("out/scene_labels.tif"), Path("out/scene_confidence.tif"))
