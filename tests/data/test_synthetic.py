"""segkit.data.synthetic: deterministic sets in the VOC layout, generation started twice at once, foreign data never
overwritten, and a set that a per-pixel colour classifier cannot learn."""

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import (
    SYNTHETIC_CLASSES,
    VOCSegmentation,
    make_synthetic_voc,
)
from segkit.evaluation.metrics import ConfusionMatrix, segmentation_scores


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_in_voc_layout(tmp_path):
    a = make_synthetic_voc(tmp_path / "a", num_train=4, num_val=2, size_range=(64, 80), seed=3)
    b = make_synthetic_voc(tmp_path / "b", num_train=4, num_val=2, size_range=(64, 80), seed=3)
    c = make_synthetic_voc(tmp_path / "c", num_train=4, num_val=2, size_range=(64, 80), seed=4)
    assert _digest(a) == _digest(b) != _digest(c)
    assert (a / "ImageSets/Segmentation/train.txt").read_text().split() == [f"synth_train_{i:05d}" for i in range(4)]
    with Image.open(a / "SegmentationClass/synth_val_00000.png") as mask:
        assert mask.mode == "P"  # palette PNG, as VOC
        assert mask.getpalette()[3:6] == [128, 0, 0]
        values = set(np.unique(np.array(mask)).tolist())
    assert values <= set(range(len(SYNTHETIC_CLASSES))) | {255}
    assert 255 in values  # object borders are ignored, as in VOC
    assert (a / "JPEGImages/synth_val_00000.jpg").is_file()


@pytest.mark.slow  # two processes / a tool's quick run: after the default set
def test_synthetic_generation_started_twice_at_once(tmp_path):
    """Two runs that generate the same set in one fresh folder at the same moment: one writes it, the other
    waits and reuses it; both succeed (without the lock, 200 images were enough for one to crash on the
    other's partial folder)."""
    import subprocess
    import sys

    code = (
        "import sys; from segkit.data import make_synthetic_voc; "
        "make_synthetic_voc(sys.argv[1], num_train=200, num_val=8, size_range=(64, 96), seed=3); print('ok')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "voc")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 and out.strip() == "ok" for out, _, rc in results), [err[-2000:] for _, err, _ in results]
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 208 and not list(tmp_path.glob("voc/*.partial"))


def test_synthetic_never_overwrites_foreign_data(tmp_path):
    (tmp_path / "VOCdevkit").mkdir()
    (tmp_path / "VOCdevkit" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by segkit"):
        make_synthetic_voc(tmp_path, num_train=2, num_val=1)
    assert (tmp_path / "VOCdevkit" / "mine.txt").read_text() == "user data"


def test_colour_baseline_fails_on_synthetic(tmp_path):
    """A per-pixel colour classifier (nearest class-mean RGB) must score below 0.5 mIoU: classes need context."""
    root = tmp_path / "synth"
    make_synthetic_voc(root, num_train=60, num_val=30, seed=0)
    k = len(SYNTHETIC_CLASSES)
    sums, counts = np.zeros((k, 3)), np.zeros(k)
    for image, mask in (VOCSegmentation(root, "train", num_classes=k).load(i) for i in range(60)):
        for c in range(k):
            sel = mask == c
            sums[c] += image[sel].sum(0)
            counts[c] += sel.sum()
    means = sums / counts[:, None]
    metric = ConfusionMatrix(k)
    val = VOCSegmentation(root, "val", num_classes=k)
    for i in range(len(val)):
        image, mask = val.load(i)
        dist = ((image[:, :, None, :].astype(float) - means[None, None]) ** 2).sum(-1)
        metric.update(torch.from_numpy(dist.argmin(-1)), torch.from_numpy(mask).long())
    miou = segmentation_scores(metric.compute())["mIoU"]
    assert miou < 0.5, miou
