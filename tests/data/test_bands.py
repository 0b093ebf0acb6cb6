"""Images of other bands than 8-bit RGB: reading (TIFF, 16-bit PNG), choosing bands, the folder data set's checks,
the padding of any number of bands, per-band statistics and the display picture."""

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import tifffile

from segkit.data import FolderDataModule
from segkit.data.bands import BandHeader, Bands, ImageFormat, display_image, read_bands, read_header
from segkit.data.base import write_label_png
from segkit.data.check import BandStatistics
from segkit.data.transforms import PadBottomRight, train_transform


def _tiff(path: Path, image: np.ndarray, planar: bool = True) -> Path:
    """(H, W, C) written band-planar (C, H, W), as GeoTIFFs usually are, or pixel-interleaved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data, layout = (image.transpose(2, 0, 1), "separate") if planar else (image, "contig")
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig=layout if image.shape[2] > 1 else None)
    return path


def _band_set(root: Path, n: int = 6, bands: int = 4, dtype=np.uint16, size=(40, 52)) -> Path:
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    for i in range(n):
        _tiff(root / "images" / f"t{i}.tif", rng.integers(0, top // 8, (*size, bands)).astype(dtype), planar=i % 2 == 0)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        write_label_png(root / "masks" / f"t{i}.png", rng.integers(0, 2, size).astype(np.uint8))
    return root


def _datamodule(root: Path, **kwargs) -> FolderDataModule:
    options = {"in_channels": 4, "mean": [0.1] * 4, "std": [0.2] * 4} | kwargs
    return FolderDataModule(
        str(root), ["a", "b"], "images", "masks", batch_size=2, crop_size=32, num_workers=0, **options
    )


def test_tiffs_read_planar_or_interleaved_at_their_depth(tmp_path):
    image = np.random.default_rng(1).integers(0, 65535, (30, 41, 5)).astype(np.uint16)
    for planar in (True, False):
        path = _tiff(tmp_path / f"{planar}.tif", image, planar)
        assert np.array_equal(read_bands(path), image)
        assert read_header(path) == BandHeader(30, 41, 5, np.dtype(np.uint16))
        assert np.array_equal(read_bands(path, [4, 0]), image[..., [4, 0]])
    grey = _tiff(tmp_path / "grey.tif", image[..., :1])
    assert read_bands(grey).shape == (30, 41, 1)
    with pytest.raises(ValueError, match=r"has 5 band\(s\) \(0-4\); data.bands asks for \[7\]"):
        read_bands(tmp_path / "True.tif", [0, 7])


def test_16_bit_and_colour_pngs_keep_their_values(tmp_path):
    grey16 = np.random.default_rng(2).integers(0, 65535, (20, 25)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), grey16)
    assert np.array_equal(read_bands(tmp_path / "g.png")[..., 0], grey16)
    assert read_header(tmp_path / "g.png") == BandHeader(20, 25, 1, np.dtype(np.uint16))
    rgb = np.random.default_rng(3).integers(0, 255, (20, 25, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_bands(tmp_path / "c.png"), rgb)  # RGB order, as read_image gives it


def test_broken_and_unsupported_files_are_named(tmp_path):
    path = _tiff(tmp_path / "a.tif", np.zeros((64, 64, 4), np.uint16))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"a\.tif"):
        read_bands(path)
    _tiff(tmp_path / "f.tif", np.zeros((8, 8, 2), np.float32))
    with pytest.raises(ValueError, match=r"f\.tif has float32 pixels; segkit reads 8-bit and 16-bit"):
        read_bands(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 2, 8, 8), np.uint16))
    with pytest.raises(ValueError, match=r"stack\.tif holds a .* one image of bands was expected"):
        read_header(tmp_path / "stack.tif")


def test_pad_equals_albumentations_for_rgb_and_pads_any_band_count():
    rng = np.random.default_rng(4)
    image, mask = rng.integers(0, 255, (50, 70, 3)).astype(np.uint8), rng.integers(0, 3, (50, 70)).astype(np.uint8)
    fill = (123.675, 116.28, 103.53)
    ref = A.PadIfNeeded(
        min_height=96, min_width=96, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=255
    )(image=image, mask=mask)
    ours = PadBottomRight(96, fill, 255)(image=image, mask=mask)
    assert np.array_equal(ref["image"], ours["image"]) and np.array_equal(ref["mask"], ours["mask"])
    wide = rng.integers(0, 4000, (50, 70, 13)).astype(np.uint16)
    out = PadBottomRight(96, [1000.4] * 13, 255)(image=wide, mask=mask)
    assert out["image"].shape == (96, 96, 13) and (out["image"][60:, :, :] == 1000).all()
    assert np.array_equal(out["image"][:50, :70], wide) and (out["mask"][50:] == 255).all()


def test_training_pipeline_normalizes_16_bit_bands_by_65535():
    """No scaling, no crop beyond the image: the output is (pixel / 65535 - mean) / std per band."""
    image = np.random.default_rng(5).integers(0, 65535, (64, 64, 5)).astype(np.uint16)
    mean, std = [0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.2, 0.1, 0.2, 0.1]
    t = train_transform(64, (1.0, 1.0), mean, std, max_value=65535.0)
    out = t(image=image, mask=np.zeros((64, 64), np.uint8))["image"].numpy()
    want = (image / 65535.0 - np.array(mean)) / np.array(std)
    flipped = np.allclose(out.transpose(1, 2, 0), want[:, ::-1], atol=1e-5)
    assert flipped or np.allclose(out.transpose(1, 2, 0), want, atol=1e-5)


def test_folder_set_of_bands_loads_and_checks_every_header(tmp_path):
    root = _band_set(tmp_path)
    dm = _datamodule(root)
    dm.prepare_data()
    assert dm.in_channels == 4 and dm.pixel_max == 65535
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 4, 32, 32)
    chosen = _datamodule(root, in_channels=None, bands=[3, 1], mean=[0.1] * 2, std=[0.2] * 2)
    image = chosen.split_dataset("train").load(0)[0]
    assert np.array_equal(image, read_bands(chosen.split_samples("train")[0].image)[..., [3, 1]])


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        ("bands", {}, r"image .*t3\.tif has 3 bands?\(s\)?; data.in_channels is 4"),
        ("dtype", {}, r"image .*t3\.tif has uint8 pixels, .*t0\.tif has uint16: every image must have the same"),
        ("none", {"mean": None, "std": None}, r"the images are 16-bit \(.*t0\.tif\): give data.mean and data.std"),
        ("none", {"mean": [0.1] * 3, "std": [0.2] * 3}, r"data.mean and data.std give 3 values for 4 bands"),
        ("none", {"bands": [0, 1], "in_channels": 3}, r"data.in_channels=3 but data.bands lists 2 bands"),
        ("none", {"display_bands": [0, 1, 4]}, r"data.display_bands names 3 of the 4 input bands \(0-3\)"),
    ],
)
def test_bad_band_sets_fail_in_one_line_before_training(tmp_path, change, kwargs, message):
    root = _band_set(tmp_path)
    if change == "bands":
        _tiff(root / "images" / "t3.tif", np.zeros((40, 52, 3), np.uint16))
    if change == "dtype":
        _tiff(root / "images" / "t3.tif", np.zeros((40, 52, 4), np.uint8))
    with pytest.raises(ValueError, match=message) as e:
        _datamodule(root, **kwargs).prepare_data()
    assert "\n" not in str(e.value)


def test_bands_differing_between_images_are_named(tmp_path):
    root = _band_set(tmp_path)
    _tiff(root / "images" / "t4.tif", np.zeros((40, 52, 6), np.uint16))
    with pytest.raises(ValueError, match=r"t4\.tif has 6 bands, .*t0\.tif has 4: every image must have the same"):
        _datamodule(root, in_channels=None, bands=[0, 1, 2, 3]).prepare_data()


def test_band_statistics_equal_numpy_over_the_set():
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 4096, (h, 30, 4)).astype(np.uint16) for h in (20, 33, 41)]
    stats = sum((BandStatistics.of(im) for im in images), None)
    pixels = np.concatenate([im.reshape(-1, 4) for im in images]).astype(np.float64) / 65535
    assert np.allclose(stats.mean, pixels.mean(0), rtol=1e-12) and np.allclose(stats.std, pixels.std(0), rtol=1e-9)
    assert stats.low.tolist() == pixels.min(0).__mul__(65535).round().astype(int).tolist()
    assert "mean: [" in stats.report() and "16-bit" in stats.report()


def test_display_picture_shows_three_bands_stretched():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 255, (30, 30, 3)).astype(np.uint8)
    assert display_image(rgb) is rgb  # 8-bit RGB as it is
    bands = rng.integers(100, 3000, (30, 30, 4)).astype(np.uint16)
    picture = display_image(bands, (3, 2, 1), 65535)
    assert picture.dtype == np.uint8 and picture.shape == (30, 30, 3)
    lo, hi = np.percentile(bands[..., 3], (2, 98))
    want = np.clip((bands[..., 3].astype(np.float32) - lo) * 255 / (hi - lo), 0, 255).round()
    assert np.array_equal(picture[..., 0], want.astype(np.uint8))
    grey = display_image(bands[..., 3:], (0, 0, 0), 65535)  # one band: grey
    assert np.array_equal(grey[..., 0], picture[..., 0]) and np.array_equal(grey[..., 2], picture[..., 0])


def test_image_format_reads_what_the_model_was_trained_on(tmp_path):
    path = _tiff(tmp_path / "x.tif", np.full((9, 9, 4), 7, np.uint16))
    fmt = ImageFormat.from_record({"mean": [0.1] * 4, "std": [0.2] * 4, "in_channels": 4, "pixel_max": 65535})
    assert not fmt.rgb and read_bands(path).shape == fmt.reader()(path).shape
    eight = ImageFormat.from_record({"mean": [0.1] * 4, "std": [0.2] * 4, "in_channels": 4, "pixel_max": 255})
    with pytest.raises(ValueError, match=r"x\.tif has uint16 pixels, the model was trained on uint8"):
        eight.reader()(path)
    assert ImageFormat.from_record({"mean": [0.5] * 3, "std": [0.5] * 3}).rgb  # a record without bands: RGB
    assert isinstance(fmt.reader(), Bands)


@pytest.mark.slow
def test_multiband_demo_trains_on_the_near_infrared_and_predicts_tiffs(tmp_path, monkeypatch, capsys):
    """demo_multiband.yaml (about 2 minutes on 2 CPU cores): data check prints the statistics in the config,
    fit learns vegetation, which only the near-infrared band shows (IoU 0.92 measured, >= 0.80 asserted), and
    eval, predict and Segmenter read the 4-band 16-bit TIFFs with the checkpoint."""
    import re

    from helpers import fit_best, segkit_here

    from segkit import Segmenter
    from segkit.data.base import read_label_png

    monkeypatch.chdir(tmp_path)
    config = ("--config", "demo_multiband.yaml")
    segkit_here(capsys, "data", "synthetic", "--kind", "multiband", "--root", "data/synthetic_multiband")
    out = segkit_here(capsys, "data", "check", *config)
    assert "mean: [0.0246, 0.0210, 0.0176, 0.0308]" in out and "std: [0.0081, 0.0057, 0.0034, 0.0146]" in out

    ckpt, table = fit_best(capsys, *config)
    vegetation = float(re.search(r"vegetation +([\d.]+)", table).group(1))
    assert vegetation >= 80.0, table[:600]

    tile = Path("data/synthetic_multiband/images/tile_0003.tif")
    segkit_here(capsys, "predict", *config, "--ckpt_path", ckpt, "--input", tile, "--output", "pred")
    mask = read_label_png(Path("pred/tile_0003.png"))
    assert mask.shape == read_bands(tile).shape[:2] and Path("pred/tile_0003_overlay.jpg").is_file()
    assert np.array_equal(Segmenter(ckpt)(tile), mask)  # the checkpoint alone reads the bands
    truth = read_label_png(Path("data/synthetic_multiband/masks/tile_0003.png"))
    assert (mask == truth).mean() > 0.85

    out = segkit_here(capsys, "eval", *config, "--ckpt_path", ckpt, "--device", "cpu")
    assert float(re.search(r"mIoU +([\d.]+)", out).group(1)) > 80.0, out[-1500:]


def test_normalize_of_16_bit_bands_equals_albumentations():
    """segkit's Normalize takes a faster path for 16-bit images; its values are albumentations' own."""
    from segkit.data.transforms import Normalize

    image = np.random.default_rng(8).integers(0, 65535, (40, 30, 6)).astype(np.uint16)
    mean, std = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.2, 0.1, 0.2, 0.1, 0.3]
    ours = Normalize(mean=mean, std=std, max_pixel_value=65535.0)(image=image)["image"]
    theirs = A.Normalize(mean=mean, std=std, max_pixel_value=65535.0)(image=image)["image"]
    assert ours.dtype == np.float32 and np.allclose(ours, theirs, atol=1e-6, rtol=0)
