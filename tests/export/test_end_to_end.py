"""`segkit export --end_to_end`: a uint8 image in, labels out, run by ONNX Runtime on images of odd and even
sizes; its labels equal `segkit predict`'s with the same settings, one scale and multi-scale + flip; its
probabilities and logits equal PyTorch's; the contract and metadata are what the file says."""

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import CONFIGS, run_here

from segkit.data.base import read_image, read_label_png
from segkit.data.palette import voc_palette
from segkit.data.transforms import eval_transform
from segkit.data.voc import VOC_CLASSES
from segkit.inference import load_inference_model, predict_probs
from segkit.inference.predict import predict_logits


def _segkit(capsys, *args, cwd):
    proc = run_here(capsys, *args, "--config", CONFIGS / "voc.yaml", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _meta(path):
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["segkit"])


def _predicted(capsys, checkpoint, photos, out, tta):
    _segkit(capsys, "predict", "--ckpt_path", checkpoint, "--input", photos, "--output", out, *tta, cwd=out.parent)
    return {p.stem: read_label_png(out / f"{p.stem}.png") for p in sorted(photos.glob("*.png"))}


@pytest.mark.parametrize(
    "tta",
    [(), pytest.param(("--scales", "0.5", "1.0", "1.75", "--flip"), marks=pytest.mark.slow)],
    ids=["one_scale", "multi_scale_flip"],
)
def test_labels_equal_segkit_predict(tta, varied_checkpoint, photos, tmp_path, capsys):
    path = tmp_path / "deeplab.onnx"
    _segkit(capsys, "export", "--ckpt_path", varied_checkpoint, "--end_to_end", "--output", path, *tta, cwd=tmp_path)
    session = _session(path)
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)", ["height", "width", 3])
    ]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("labels", "tensor(uint8)", ["height", "width"])
    ]
    want = _predicted(capsys, varied_checkpoint, photos, tmp_path / "predicted", tta)
    for stem, expected in want.items():
        (labels,) = session.run(None, {"image": read_image(photos / f"{stem}.png")})
        assert labels.shape == expected.shape
        assert (labels == expected).mean() >= 0.9999, stem
        assert len(np.unique(expected)) >= 2, stem  # by construction (conftest.VARIED_SETTINGS): not a constant map
    meta = _meta(path)
    assert meta["form"] == "end_to_end" and meta["class_names"] == list(VOC_CLASSES)
    assert meta["palette"] == voc_palette()[:21].tolist() and meta["mean"] == [0.5, 0.5, 0.5]
    assert meta["checkpoint"]["sha256"] == hashlib.sha256(varied_checkpoint.read_bytes()).hexdigest()
    scales = [float(s) for s in tta[1:4]] if tta else [1.0]
    assert meta["settings"] == {"scales": scales, "flip": bool(tta), "pad_to": None, "output_stride": 16}
    assert meta["verification"] is None and meta["quantization"] is None


def test_batch_with_probs_logits_and_padding(varied_checkpoint, tmp_path, capsys):
    """A batch of two images, padded as the official evaluation pads: probabilities and logits as PyTorch's
    (within 1e-4), labels their argmax; the batch and the sizes are dynamic."""
    path = tmp_path / "batch.onnx"
    options = ("--batch", "--outputs", "labels", "probs", "logits", "--pad_to", "129", "161")
    _segkit(
        capsys, "export", "--ckpt_path", varied_checkpoint, "--end_to_end", "--output", path, *options, cwd=tmp_path
    )
    session = _session(path)
    assert session.get_inputs()[0].shape == ["batch", "height", "width", 3]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("labels", ["batch", "height", "width"]),
        ("probs", ["batch", 21, "height", "width"]),
        ("logits", ["batch", 21, "height", "width"]),
    ]
    model = load_inference_model(varied_checkpoint)
    transform = eval_transform((0.5,) * 3, (0.5,) * 3)
    rng = np.random.default_rng(0)
    for n, h, w in [(2, 100, 120), (1, 150, 170), (3, 31, 45)]:
        images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        labels, probs, logits = session.run(None, {"image": images})
        x = torch.stack([transform(image=im)["image"] for im in images])
        want_probs = predict_probs(model, x, pad_to=(129, 161)).numpy()
        want_logits = predict_logits(model, x, pad_to=(129, 161)).numpy()
        assert probs.shape == (n, 21, h, w) and np.abs(probs - want_probs).max() < 1e-4
        assert np.abs(logits - want_logits).max() < 1e-4 * max(1.0, np.abs(want_logits).max())
        assert (labels == probs.argmax(1)).all() and labels.dtype == np.uint8


@pytest.mark.parametrize(
    "args, message",
    [
        (("--scales", "0.5", "1.0"), "shape the end-to-end form: add --end_to_end"),
        (("--end_to_end", "--format", "torchscript"), "write ONNX: leave out --format torchscript"),
        (("--end_to_end", "--outputs", "logits", "--flip"), "--outputs logits needs one scale (1.0) and no flip"),
        (("--end_to_end", "--outputs", "labelz"), "--outputs takes one or more of labels, probs, logits"),
    ],
)
def test_option_errors_are_one_line(args, message, varied_checkpoint, tmp_path, capsys):
    proc = run_here(
        capsys,
        "export",
        "--config",
        CONFIGS / "voc.yaml",
        "--ckpt_path",
        varied_checkpoint,
        "--output",
        tmp_path / "m.onnx",
        *args,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert not (tmp_path / "m.onnx").exists()
