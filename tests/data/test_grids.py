"""A georeferenced image and its georeferenced mask must lie on the same grid: another CRS, pixel size or origin
is refused in one line naming both files (training, segkit eval and segkit data check load through it)."""

import numpy as np
import pytest

from segkit.data import FolderDataModule
from segkit.data.check import check_split

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

UTM = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 500000, 0, -10, 4500000)}


def _write(path, array, grid):
    profile = {"driver": "GTiff", "width": array.shape[-1], "height": array.shape[-2], "dtype": "uint8"}
    with rasterio.open(path, "w", count=len(array), **profile, **grid) as dst:
        dst.write(array)


@pytest.mark.parametrize(
    "mask_grid, differ",
    [
        (UTM, None),
        ({"crs": CRS.from_epsg(32634), "transform": UTM["transform"]}, "CRS (GeoKeys)"),
        ({"crs": UTM["crs"], "transform": Affine(10, 0, 500100, 0, -10, 4500000)}, "origin (tiepoint)"),
        ({"crs": UTM["crs"], "transform": Affine(20, 0, 500000, 0, -20, 4500000)}, "pixel size"),
    ],
)
def test_an_image_and_mask_on_different_grids_are_refused_in_one_line(tmp_path, mask_grid, differ):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _write(tmp_path / "images" / "a.tif", np.full((3, 16, 16), 100, np.uint8), UTM)
    _write(tmp_path / "masks" / "a.tif", np.ones((1, 16, 16), np.uint8), mask_grid)
    folders = {"train_images": "images", "train_masks": "masks", "val_images": "images", "val_masks": "masks"}
    dataset = FolderDataModule(str(tmp_path), ["background", "field"], **folders).split_dataset("val")
    if differ is None:
        assert (dataset.load(0)[1] == 1).all()
        return
    with pytest.raises(ValueError) as error:
        dataset.load(0)
    message = str(error.value)
    assert "\n" not in message and "images/a.tif" in message and "masks/a.tif" in message and differ in message
    assert check_split(dataset)["problems"] == [f"ValueError: {message}"]
