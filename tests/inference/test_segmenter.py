"""`segkit.Segmenter`: a checkpoint or an exported file, images in (paths, PIL images, arrays of any size, alone
or in lists), label maps out, equal to `segkit predict`'s; arrays converted as files are read; one-line errors."""

import re

import cv2
import numpy as np
import pytest
import torch
from helpers import CONFIGS, REPO, assert_labels_but_ties, run_here
from PIL import Image

from segkit import Segmenter
from segkit.data.base import read_image, read_label_png
from segkit.data.voc import VOC_CLASSES
from segkit.inference import predict_probs


def _predicted(capsys, checkpoint, photos, out, *tta):
    proc = run_here(
        capsys,
        "predict",
        "--config",
        CONFIGS / "voc.yaml",
        "--ckpt_path",
        checkpoint,
        "--input",
        photos,
        "--output",
        out,
        *tta,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [read_label_png(out / f"{p.stem}.png") for p in sorted(photos.glob("*.png"))]


@pytest.mark.parametrize("tta", [(), ("--scales", "0.75", "1.25", "--flip")], ids=["one_scale", "scales_flip"])
def test_checkpoint_equals_segkit_predict(tta, varied_checkpoint, photos, tmp_path, capsys):
    want = _predicted(capsys, varied_checkpoint, photos, tmp_path / "out", *tta)
    files = sorted(photos.glob("*.png"))
    kwargs = {"scales": [0.75, 1.25], "flip": True} if tta else {}
    segment = Segmenter(varied_checkpoint, **kwargs)
    assert segment.class_names == list(VOC_CLASSES) and segment.palette.shape == (256, 3)
    inputs = [str(files[0]), Image.open(files[1]), read_image(files[2]), files[0]]  # path, PIL, array, Path
    got = segment(inputs)
    assert all(labels.dtype == np.uint8 for labels in got)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])  # each alone, as predict runs them
    # the two copies of the first image run as one batch of two, predict runs it alone: other kernels, so ties
    # within float rounding may go either way
    x = segment.transform(image=read_image(files[0]))["image"][None]
    probs = predict_probs(segment.model, x, **segment.settings.options())[0]
    assert_labels_but_ties(want[0], probs)
    assert_labels_but_ties(got[0], probs)
    assert_labels_but_ties(got[3], probs)
    assert np.array_equal(segment(files[1]), want[1])  # one image in, one map out


def test_exported_file_equals_its_checkpoint(varied_checkpoint, end_to_end_onnx, photos):
    images = [read_image(f) for f in sorted(photos.glob("*.png"))]
    ours, theirs = Segmenter(end_to_end_onnx)(images), Segmenter(varied_checkpoint)(images)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and (a == b).mean() >= 0.9999
    assert Segmenter(end_to_end_onnx).settings.scales == (1.0,)


def test_arrays_are_converted_as_files_are_read(varied_checkpoint, photos, tmp_path):
    """Grey, RGBA and 16-bit arrays give what the same pixels written as PNG files give."""
    segment = Segmenter(varied_checkpoint)
    rgb = read_image(sorted(photos.glob("*.png"))[0])
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb, np.arange(rgb.size // 3, dtype=np.uint8).reshape(rgb.shape[:2])])
    deep = rgb.astype(np.uint16) * 257 + 100  # 16 bits whose low byte must not matter
    for name, array in {"grey": grey, "rgba": rgba, "deep": deep}.items():
        file = tmp_path / f"{name}.png"
        bgr = (
            array
            if array.ndim == 2
            else cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        )
        cv2.imwrite(str(file), bgr)
        assert np.array_equal(segment(array), segment(file)), name
    assert np.array_equal(segment(Image.fromarray(rgba)), segment(rgb))


def test_errors_are_one_line(varied_checkpoint, end_to_end_onnx, checkpoint, tmp_path):
    segment = Segmenter(varied_checkpoint)
    with pytest.raises(ValueError, match=r"image 0: float32 pixels; give uint8 \(0-255\) or uint16"):
        segment(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"image 1: an image of shape \(8, 8, 2\)"):
        segment([np.zeros((8, 8), np.uint8), np.zeros((8, 8, 2), np.uint8)])
    with pytest.raises(FileNotFoundError, match="image file not found"):
        segment(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match=r"has its test-time settings baked in \(flip False\)"):
        Segmenter(end_to_end_onnx, flip=True)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        Segmenter(tmp_path / "missing.onnx")
    old = tmp_path / "old.ckpt"
    data = torch.load(checkpoint, weights_only=False)
    del data["segkit_data"]
    torch.save(data, old)
    with pytest.raises(ValueError, match="does not record its data set's normalization"):
        Segmenter(old)


def test_the_readme_snippet_segments_an_image(end_to_end_onnx, photos, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (snippet,) = [b for b in blocks if "Segmenter" in b]
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 3  # three lines of code
    (tmp_path / "deeplab.onnx").symlink_to(end_to_end_onnx)
    (tmp_path / "photo.jpg").write_bytes(
        cv2.imencode(".jpg", cv2.imread(str(sorted(photos.glob("*.png"))[2])))[1].tobytes()
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert namespace["labels"].shape == (360, 480) and namespace["labels"].dtype == np.uint8
