"""segkit export of models that do not read 8-bit RGB or do not give one label per pixel: a 4-band 16-bit
model's files take the bands as stored (uint16), a multi-label model's decide each class at the checkpoint's
tuned thresholds. Each file is verified against its checkpoint (--verify) and read back by eval --model_file
(which scores it as --verify did) and Segmenter, whose labels must equal the checkpoint's."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS, segkit_here

from segkit import Segmenter
from segkit.data.bands import read_bands
from segkit.data.synthetic import make_synthetic_multiband
from segkit.inference.exported import ExportedModel, read_metadata

QUICK_FIT = [
    "--trainer.max_steps",
    "12",
    "--trainer.val_check_interval",
    "12",
    "--trainer.enable_progress_bar",
    "false",
]


def _fit(capsys, root: Path, args: list) -> Path:
    """12 steps of a tiny model (32 decoder channels) on ``args``; its best checkpoint."""
    runs = ["--trainer.default_root_dir", root / "runs", "--trainer.logger.init_args.save_dir", root / "runs"]
    segkit_here(capsys, "fit", *args, "--model.decoder_channels", "32", *QUICK_FIT, *runs)
    return next((root / "runs").rglob("best-*.ckpt"))


def _small(config: str, data: Path) -> list:
    return ["--config", CONFIGS / config, "--data.root", data, "--data.crop_size", "64", "--data.val_fraction", "0.25"]


def _agreement(out: str) -> float:
    import re

    return float(re.search(r"labels equal to the checkpoint's on ([\d.]+)% of pixels", out).group(1))


def test_multiband_model_exports_taking_its_16_bit_bands(tmp_path, capsys):
    data = make_synthetic_multiband(tmp_path / "data", num_images=16, size_range=(64, 80), seed=0)
    args = _small("demo_multiband.yaml", data)
    ckpt = _fit(capsys, tmp_path, args)
    model_file = tmp_path / "bands.onnx"
    out = segkit_here(capsys, "export", *args, "--ckpt_path", ckpt, "--end_to_end", "--output", model_file, "--verify")
    assert _agreement(out) >= 99.99, out[-800:]
    meta = read_metadata(model_file)
    assert meta["inputs"][0]["dtype"] == "uint16" and meta["inputs"][0]["shape"] == ["height", "width", 4]
    assert meta["pixel_max"] == 65535 and meta["in_channels"] == 4 and meta["multilabel"] is False

    tile = sorted((data / "images").glob("*.tif"))[0]
    want = Segmenter(ckpt)(tile)
    assert (Segmenter(model_file)(tile) == want).mean() >= 0.9999  # the file reads the TIFF's bands itself
    with pytest.raises(ValueError, match=r"takes images \(H, W, 4\) of uint16, got uint8"):
        ExportedModel(model_file).labels([np.zeros((8, 8, 4), np.uint8)])

    logits_file = tmp_path / "bands-logits.onnx"
    segkit_here(capsys, "export", *args, "--ckpt_path", ckpt, "--output", logits_file)
    assert read_metadata(logits_file)["inputs"][0]["shape"] == ["batch", 4, "height", "width"]
    got = ExportedModel(logits_file).labels([read_bands(tile)])[0]
    assert (got == want).mean() >= 0.9999

    for source, name in (("--ckpt_path", ckpt), ("--model_file", model_file)):
        segkit_here(capsys, "eval", *args, source, name, "--device", "cpu", "--json", tmp_path / f"{source}.json")
    ours, theirs = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("--model_file", "--ckpt_path"))
    assert ours["mIoU"] == pytest.approx(theirs["mIoU"], abs=1e-4)


def test_multilabel_model_exports_deciding_at_its_tuned_thresholds(multilabel_run, tmp_path, capsys):
    """The file carries the tuned thresholds, its (K, H, W) masks agree with the checkpoint's (--verify) and eval
    --model_file scores it as --verify did (every form against the checkpoint: tests/e2e/test_every_head.py)."""
    args, tuned = multilabel_run.args, multilabel_run.tuned
    thresholds = Segmenter(tuned).thresholds
    assert any(t != 0.5 for t in thresholds)  # so that the file must carry them to agree

    model_file = tmp_path / "multilabel.onnx"
    export = ("export", *args, "--ckpt_path", tuned, "--end_to_end", "--outputs", "labels", "probs")
    out = segkit_here(capsys, *export, "--output", model_file, "--verify")
    assert _agreement(out) >= 99.99, out[-800:]
    meta = read_metadata(model_file)
    assert meta["multilabel"] and meta["thresholds"] == pytest.approx(thresholds)
    assert meta["outputs"][0]["shape"] == [3, "height", "width"] and meta["outputs"][0]["dtype"] == "uint8"
    assert meta["verification"]["mIoU"] == pytest.approx(meta["verification"]["checkpoint_mIoU"], abs=1e-3)
    scored = tmp_path / "file.json"
    segkit_here(capsys, "eval", *args, "--model_file", model_file, "--json", scored)
    assert json.loads(scored.read_text())["mIoU"] == pytest.approx(meta["verification"]["mIoU"], abs=1e-9)
