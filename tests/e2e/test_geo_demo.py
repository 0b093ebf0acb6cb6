"""demo_geo.yaml from start to end: the georeferenced synthetic set, its statistics without nodata, training that
leaves the nodata borders out, and its scenes predicted on their grid."""

import re
from pathlib import Path

import pytest
from helpers import fit_best, segkit_here

from segkit.data.base import read_label_png

rasterio = pytest.importorskip("rasterio")


@pytest.mark.slow
def test_geo_demo_trains_without_nodata_and_labels_scenes_on_their_grid(tmp_path, monkeypatch, capsys):
    """data check prints the config's statistics (nodata left out), fit learns vegetation (which only the
    near-infrared band shows; >= 0.80 IoU asserted), and predict writes each scene's labels on its grid in 128 px
    windows: 255 on its nodata border (48 columns), its mask's classes on 90% of the other pixels at least."""
    monkeypatch.chdir(tmp_path)
    config = ("--config", "demo_geo.yaml")
    segkit_here(capsys, "data", "synthetic", "--kind", "geo", "--root", "data/synthetic_geo")
    out = segkit_here(capsys, "data", "check", *config)
    assert "mean: [0.0243, 0.0208, 0.0176, 0.0303]" in out and "std: [0.0083, 0.0058, 0.0034, 0.0148]" in out

    ckpt, table = fit_best(capsys, *config)
    assert float(re.search(r"vegetation +([\d.]+)", table).group(1)) >= 80.0, table[:600]

    scenes = Path("data/synthetic_geo/scenes")
    predict = ("predict", *config, "--ckpt_path", ckpt, "--input", scenes, "--output", "labels", "--window", "128")
    segkit_here(capsys, *predict)
    for scene in sorted(scenes.glob("*.tif")):
        with rasterio.open(scene) as source, rasterio.open(Path("labels") / f"{scene.stem}_labels.tif") as labels:
            assert (labels.crs, labels.transform, labels.shape) == (source.crs, source.transform, source.shape)
            got = labels.read(1)
        truth = read_label_png(scenes.parent / "scene_masks" / f"{scene.stem}.png")
        assert (got[:, :48] == 255).all()
        assert (got[:, 48:] == truth[:, 48:]).mean() >= 0.90  # 97.5% and 97.8% measured
