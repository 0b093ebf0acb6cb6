"""data.nodata: the nodata pixels of an image (a GeoTIFF's own value by default) are unlabelled in training and
scoring and left out of segkit data check's band statistics, counted against the pixels written here."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from segkit.data import FolderDataModule
from segkit.data.check import check_split
from segkit.data.nodata import GDAL_NODATA, Nodata, file_nodata

rasterio = pytest.importorskip("rasterio")


def _data_set(root, nodata_tag: str | None = "7", **options) -> tuple[FolderDataModule, np.ndarray]:
    """One 3-band GeoTIFF-tagged image of 20 x 30 whose first 4 columns are 7 in every band and whose pixel (10,
    10) is 7 in its first band only, with a mask of class 1 on the right half."""
    rng = np.random.default_rng(0)
    image = rng.integers(10, 250, (20, 30, 3), dtype=np.uint8)
    image[:, :4] = 7
    image[10, 10, 0] = 7
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    extratags = [] if nodata_tag is None else [(GDAL_NODATA, "s", 0, nodata_tag, True)]
    tifffile.imwrite(root / "images" / "a.tif", image, extratags=extratags)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 1
    Image.fromarray(mask).save(root / "masks" / "a.png")
    folders = {"train_images": "images", "train_masks": "masks", "val_images": "images", "val_masks": "masks"}
    return FolderDataModule(str(root), ["background", "field"], **folders, **options), image


def test_a_files_own_nodata_pixels_are_unlabelled(tmp_path):
    dm, image = _data_set(tmp_path)
    assert file_nodata(tmp_path / "images" / "a.tif") == 7.0
    _, mask = dm.split_dataset("val").load(0)
    assert (mask[:, :4] == 255).all() and (mask == 255).sum() == 4 * 20  # (10, 10) is 7 in one band only
    assert (mask[:, 15:] == 1).all() and (mask[:, 4:15] == 0).all()


def test_any_band_and_a_given_value_and_none(tmp_path):
    dm, _ = _data_set(tmp_path / "any", nodata_bands="any")
    _, mask = dm.split_dataset("val").load(0)
    assert (mask == 255).sum() == 4 * 20 + 1 and mask[10, 10] == 255
    dm, _ = _data_set(tmp_path / "given", nodata_tag=None, nodata=7)
    assert (dm.split_dataset("val").load(0)[1] == 255).sum() == 4 * 20
    dm, _ = _data_set(tmp_path / "off", nodata=None)
    assert (dm.split_dataset("val").load(0)[1] != 255).all()
    dm, _ = _data_set(tmp_path / "untagged", nodata_tag=None)  # the default reads the file's own: none
    assert (dm.split_dataset("val").load(0)[1] != 255).all()


def test_band_statistics_leave_nodata_out(tmp_path):
    dm, image = _data_set(tmp_path)
    stats = check_split(dm.split_dataset("train"))["bands"]
    valid = image[:, 4:].reshape(-1, 3).astype(np.float64)
    assert stats.count == len(valid)
    assert np.allclose(stats.mean, valid.mean(0) / 255) and np.allclose(stats.std, valid.std(0) / 255)


@pytest.mark.parametrize(
    "options, message",
    [({"nodata": "border"}, "data.nodata is a pixel value"), ({"nodata_bands": "some"}, "data.nodata_bands")],
)
def test_bad_nodata_options_are_one_line(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        _data_set(tmp_path, **options)


def test_a_geotiff_written_by_rasterio_says_its_nodata(tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 2, "dtype": "uint16", "nodata": 65535}
    with rasterio.open(tmp_path / "s.tif", "w", **profile, crs=CRS.from_epsg(3857), transform=Affine.scale(2)) as dst:
        dst.write(np.ones((2, 8, 8), np.uint16))
    assert file_nodata(tmp_path / "s.tif") == 65535.0
    assert Nodata().pixels(np.full((8, 8, 2), 65535, np.uint16), tmp_path / "s.tif").all()
