"""Images larger than the memory budget: band-by-band tiled prediction against the in-memory sliding window,
the memory estimates against hand counts, and segkit predict switching by itself (and refusing absurd headers)."""

import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from helpers import CONFIGS, assert_labels_but_ties, run_here
from PIL import Image
from torch import nn

from segkit.data.transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform
from segkit.inference import load_inference_model, predict_probs
from segkit.inference.image_files import header_size
from segkit.inference.memory import ACTIVATION_SAFETY, ModelFootprint, activation_bytes_per_pixel, parse_size
from segkit.inference.outputs import confidence_maps
from segkit.inference.tiled import tiled_probs
from segkit.models import DeepLabV3Plus


class CountingModel(nn.Module):
    """A model that records the size of every input it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.inputs, self.num_classes = model, [], model.num_classes

    def forward(self, x, **kwargs):
        self.inputs.append(tuple(x.shape[-2:]))
        return self.model(x, **kwargs)


def _tiled(model, image, window, **tta):
    h, w = image.shape[-2:]
    read = lambda y0, y1, x0, x1: image[..., y0:y1, x0:x1]  # noqa: E731
    bands = list(tiled_probs(model, read, h, w, window=window, **tta))
    starts = [y0 for y0, _ in bands]
    assert starts == sorted(starts) and starts[0] == 0
    assert [y0 + p.shape[1] for y0, p in bands[:-1]] == starts[1:]  # every row once, in order
    assert all(p.shape[1] <= window and p.shape[2] == w for _, p in bands)
    return torch.cat([p for _, p in bands], 1)


@pytest.mark.parametrize("size", [(300, 417), (90, 417), (300, 70)])
def test_one_pass_equals_the_in_memory_sliding_window(size):
    """Scale 1 without flip: the windows' logits averaged, then softmax, as predict_probs(window=...) does; every
    window the model sees is window x window (the image padded where it is smaller)."""
    torch.manual_seed(0)
    model = CountingModel(DeepLabV3Plus(6, "xception_tiny", 16, decoder_channels=32).eval())
    image = torch.randn(1, 3, *size)
    want = predict_probs(model, image, window=96)[0]
    model.inputs.clear()
    got = _tiled(model, image, 96)
    assert set(model.inputs) == {(96, 96)}
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert_labels_but_ties(got.argmax(0), want)  # the same sums in another order
    read = lambda y0, y1, x0, x1: image[..., y0:y1, x0:x1]  # noqa: E731
    chunks = list(tiled_probs(model, read, *size, window=96, chunk_bytes=6 * 4 * size[1] * 5))  # 5 rows at a time
    assert max(p.shape[1] for _, p in chunks) == 5 and len(chunks) >= size[0] // 5
    torch.testing.assert_close(torch.cat([p for _, p in chunks], 1), got, atol=1e-7, rtol=0)


def test_test_time_augmentation_per_window(varied_checkpoint, photos):
    """Several scales and flips run on each window (predict_probs of the window alone) and the windows'
    probabilities are averaged where they overlap. (The in-memory path scales the whole image before cutting
    windows, so it sees other context: its labels are not the tiled ones.)"""
    model = load_inference_model(varied_checkpoint)
    image = cv2.cvtColor(cv2.imread(str(next(photos.glob("*513x513.png")))), cv2.COLOR_BGR2RGB)
    x = eval_transform((0.5,) * 3, (0.5,) * 3)(image=image)["image"][None]
    tta = {"scales": (0.75, 1.0, 1.25), "flip": True}
    got = _tiled(model, x, 160, **tta)
    torch.testing.assert_close(got.sum(0), torch.ones(got.shape[1:]), atol=1e-5, rtol=0)

    def alone(y: int, x0: int) -> torch.Tensor:
        return predict_probs(model, x[..., y : y + 160, x0 : x0 + 160], **tta)[0]

    # window starts 0, 106, 212, 318, 353 (stride int(160 * 2 / 3), the last at the border)
    torch.testing.assert_close(got[:, :106, :106], alone(0, 0)[:, :106, :106])  # the first window alone
    torch.testing.assert_close(got[:, 478:, 478:], alone(353, 353)[:, 125:, 125:])  # the last window alone
    both = (alone(0, 0)[:, 106:160, :106] + alone(106, 0)[:, :54, :106]) / 2  # two windows overlap
    torch.testing.assert_close(got[:, 106:160, :106], both)


def test_activation_probe_counts_tensors_by_hand():
    """A 1x1 convolution to 8 channels and a ReLU on a 3-channel input: at the ReLU's end the input (3), the
    convolution's output (8) and the ReLU's (8) are alive, 4 bytes each: 76 bytes per pixel, times the safety
    factor."""
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU())
    per_pixel, classes = activation_bytes_per_pixel(model)
    assert classes == 8
    assert per_pixel == pytest.approx(ACTIVATION_SAFETY * (3 + 8 + 8) * 4)


def test_estimates_by_hand():
    footprint = ModelFootprint(activation=100.0, num_classes=21)
    # whole: (27 + 12 K + 12 + activation) per pixel at scale 1
    assert footprint.whole_image_bytes(1000, 2000) == 2_000_000 * (27 + 252 + 12 + 100)
    # tiled: 7 bytes per pixel, a band of (4K + 4) x window x width, four 64 MiB chunks, one window's work
    band = 88 * 513 * 2000 + 4 * 2**26
    assert footprint.tiled_bytes(100, 200, 64) == 7 * 20_000 + 5 * 88 * 64 * 200 + 64**2 * (100 + 12 + 252)
    tile = 513**2 * (100 + 12 + 252)
    assert footprint.tiled_bytes(1000, 2000, 513) == 7 * 2_000_000 + band + tile


def test_parse_size():
    assert parse_size("4GB") == 4 * 10**9
    assert parse_size("512 MiB") == 512 * 2**20
    assert parse_size("1.5e9") == 1_500_000_000
    for bad in ("lots", "4 parsecs", "-1GB", "0"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def _predict(capsys, *args, cwd):
    return run_here(capsys, "predict", "--config", CONFIGS / "voc.yaml", "--num_workers", "0", *args, cwd=cwd)


def test_predict_switches_to_tiles_above_the_budget(varied_checkpoint, photos, tmp_path, capsys):
    """With an 80 MB budget the 513 x 513 photo does not fit whole: predict says so and tiles it; its mask, overlay and
    confidence maps equal the in-memory --window prediction's (which fits under the default budget), and the
    other photos are still predicted whole in the same run."""
    args = ("--ckpt_path", str(varied_checkpoint), "--input", str(photos), "--window", "128", "--confidence")
    tiled = _predict(capsys, *args, "--output", str(tmp_path / "tiled"), "--memory_budget", "80MB", cwd=tmp_path)
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    said = [line for line in tiled.stdout.splitlines() if "band by band" in line]
    assert len(said) == 1 and "513 x 513" in said[0] and "128 px windows" in said[0], tiled.stdout[-2000:]
    whole = _predict(capsys, *args, "--output", str(tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0 and "band by band" not in whole.stdout
    for photo in sorted(photos.glob("*.png")):
        a = np.array(Image.open(tmp_path / "tiled" / f"{photo.stem}.png"))
        b = np.array(Image.open(tmp_path / "whole" / f"{photo.stem}.png"))
        assert (a == b).mean() >= 0.9999, (photo.name, (a == b).mean())
        for kind in ("confidence", "entropy"):
            a = np.array(Image.open(tmp_path / "tiled" / f"{photo.stem}_{kind}.png")).astype(int)
            b = np.array(Image.open(tmp_path / "whole" / f"{photo.stem}_{kind}.png")).astype(int)
            assert np.abs(a - b).max() <= 2, (photo.name, kind)
        a = cv2.imread(str(tmp_path / "tiled" / f"{photo.stem}_overlay.jpg")).astype(int)
        b = cv2.imread(str(tmp_path / "whole" / f"{photo.stem}_overlay.jpg")).astype(int)
        assert a.shape == b.shape == cv2.imread(str(photo)).shape
        assert np.abs(a - b).mean() < 2, photo.name  # the same blend, JPEG-encoded by OpenCV and by PIL
    big = next(photos.glob("*513x513.png"))
    labels = np.array(Image.open(tmp_path / "tiled" / f"{big.stem}.png"))
    assert len(np.unique(labels)) >= 2  # the comparison sees several classes (by construction: VARIED_SETTINGS)


def test_tiled_confidence_maps_are_those_of_the_tiled_probabilities(varied_checkpoint, photos, tmp_path, capsys):
    """The 16-bit maps written for a tiled image are confidence_maps of the probabilities tiled_probs gives."""
    big = next(photos.glob("*513x513.png"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / big.name).write_bytes(big.read_bytes())
    proc = _predict(
        capsys,
        *("--ckpt_path", str(varied_checkpoint), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")),
        *("--window", "200", "--memory_budget", "100MB", "--confidence", "--scales", "0.5", "1.0", "--flip"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "band by band" in proc.stdout, proc.stderr[-2000:]
    model = load_inference_model(varied_checkpoint)
    image = cv2.cvtColor(cv2.imread(str(big)), cv2.COLOR_BGR2RGB)
    x = eval_transform(XCEPTION_MEAN, XCEPTION_STD)(image=image)["image"][None]
    probs = _tiled(model, x, 200, scales=(0.5, 1.0), flip=True)
    top, entropy = confidence_maps(probs)
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / f"{big.stem}.png")), probs.argmax(0).numpy())
    for kind, want in (("confidence", top), ("entropy", entropy)):
        got = np.array(Image.open(tmp_path / "out" / f"{big.stem}_{kind}.png")).astype(int)
        assert np.abs(got - want.astype(int)).max() <= 1, kind


def _forged_png(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with a valid CRC, and a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_absurd_headers_are_refused_before_decoding(varied_checkpoint, photos, tmp_path, capsys):
    """A 90-byte PNG that claims 50000 x 50000 pixels (2.5 Gpx, 7.5 GB decoded): one line naming it, the
    other images written, exit 1; --max_pixels lowers the limit; a budget too small even for tiles is named."""
    folder = tmp_path / "in"
    folder.mkdir()
    _forged_png(folder / "bomb.png", 50000, 50000)
    assert header_size(folder / "bomb.png") == (50000, 50000)  # read although PIL's own limit is lower
    small = next(photos.glob("*97x131.png"))
    (folder / small.name).write_bytes(small.read_bytes())
    ckpt = ("--ckpt_path", str(varied_checkpoint), "--input", str(folder))
    proc = _predict(capsys, *ckpt, "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "wrote 1 of 2 image(s)" in proc.stdout
    line = f"{folder / 'bomb.png'}: its header says 50000 x 50000 (2.5 Gpx), above the limit of 1073741824 pixels"
    assert line in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out" / "bomb.png").exists() and (tmp_path / "out" / f"{small.stem}.png").exists()

    proc = _predict(capsys, *ckpt, "--output", str(tmp_path / "out2"), "--max_pixels", "10000", cwd=tmp_path)
    assert f"{folder / small.name}: its header says 131 x 97 (12.7 kpx), above the limit of 10000" in proc.stderr

    (folder / "bomb.png").unlink()
    proc = _predict(capsys, *ckpt, "--output", str(tmp_path / "out3"), "--memory_budget", "1MB", cwd=tmp_path)
    assert proc.returncode == 1
    assert "even tiled, above the memory budget of 1.0 MB; raise --memory_budget or lower --window" in proc.stderr

    proc = _predict(capsys, *ckpt, "--output", str(tmp_path / "out4"), "--memory_budget", "lots", cwd=tmp_path)
    assert proc.returncode == 2 and "--memory_budget: 'lots' is not a size" in proc.stderr


def test_eval_tiles_above_the_budget_with_the_same_scores(tiny_voc, checkpoint, tmp_path, capsys):
    """segkit eval with a 3 MB budget and 40 px windows: the larger validation images are tiled (and said
    so), the smaller ones predicted whole; mIoU, Boundary IoU and calibration (counted band by band) equal the
    in-memory --window evaluation's."""
    common = ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, "--data.num_workers", "0"]
    common += ["--ckpt_path", checkpoint, "--window", "40", "--calibration", "--boundary_iou", "--device", "cpu"]
    tiled = run_here(capsys, "eval", *common, "--memory_budget", "3MB", "--json", tmp_path / "t.json", cwd=tmp_path)
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    said = [line for line in (tiled.stdout + tiled.stderr).splitlines() if "band by band" in line]
    assert 1 <= len(said) < 5, tiled.stdout[-2000:]  # some of the 5 images, not all
    whole = run_here(capsys, "eval", *common, "--json", tmp_path / "w.json", cwd=tmp_path)
    assert whole.returncode == 0 and "band by band" not in whole.stdout + whole.stderr
    t, w = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("t", "w"))
    assert t["mIoU"] == w["mIoU"] and t["per_class_iou"] == w["per_class_iou"]
    assert t["boundary_iou"] == w["boundary_iou"]
    assert t["calibration"]["pixels"] == w["calibration"]["pixels"]
    assert t["calibration"]["ECE"] == pytest.approx(w["calibration"]["ECE"], abs=1e-6)
    assert t["calibration"]["NLL"] == pytest.approx(w["calibration"]["NLL"], rel=1e-6)
