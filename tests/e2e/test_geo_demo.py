"""demo_geo.yaml from start to end: the georeferenced synthetic set, its statistics without nodata, training that
leaves the nodata borders out, and its scenes predicted on their grid."""

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import segkit_here

rasterio = pytest.importorskip("rasterio")


@pytest.mark.slow
def test_geo_demo_trains_without_nodata_and_labels_scenes_on_their_grid(tmp_path, monkeypatch, capsys):
    """data check prints the config's statistics (nodata left out), fit learns vegetation (which only the
    near-infrared band shows; >= 0.80 IoU asserted), and predict writes each scene's labels on its grid, 255 on
    its nodata border (48 columns)."""
    monkeypatch.chdir(tmp_path)
    config = ("--config", "demo_geo.yaml")
    segkit_here(capsys, "data", "synthetic", "--kind", "geo", "--root", "data/synthetic_geo")
    out = segkit_here(capsys, "data", "check", *config)
    assert "mean: [0.0243, 0.0208, 0.0176, 0.0303]" in out and "std: [0.0083, 0.0058, 0.0034, 0.0148]" in out

    out = segkit_here(capsys, "fit", *config, "--trainer.enable_progress_bar", "false")
    best = re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\): (\S+)", out)
    ckpt = best.group(2)
    step = re.search(r"-step(\d+)-", ckpt).group(1)
    table = out[out.index(f"per-class IoU after step {step}") :]
    assert float(re.search(r"vegetation +([\d.]+)", table).group(1)) >= 80.0, table[:600]

    segkit_here(
        capsys, "predict", *config, "--ckpt_path", ckpt, "--input", "data/synthetic_geo/scenes", "--output", "labels"
    )
    for scene in sorted(Path("data/synthetic_geo/scenes").glob("*.tif")):
        with rasterio.open(scene) as source, rasterio.open(Path("labels") / f"{scene.stem}_labels.tif") as labels:
            assert (labels.crs, labels.transform, labels.shape) == (source.crs, source.transform, source.shape)
            got = labels.read(1)
        assert (got[:, :48] == 255).all() and np.isin(got[:, 48:], [0, 1, 2]).all()
