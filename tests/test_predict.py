"""`segkit predict` on a folder and `segkit export` to ONNX and TorchScript, checked against the PyTorch model."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import VOCDataModule
from segkit.data.transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform
from segkit.data.voc import VOC_CLASSES, voc_palette
from segkit.task import SegmentationTask

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tiny_voc, tmp_path_factory):
    """A small VOC model after a few training steps (batch-norm statistics no longer at their defaults)."""
    tmp = tmp_path_factory.mktemp("predict_ckpt")
    L.seed_everything(0)
    task = SegmentationTask(num_classes=21, encoder="xception_tiny", decoder_channels=32, lr=0.05)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp,
                        enable_checkpointing=False)
    trainer.fit(task, VOCDataModule(root=str(tiny_voc), batch_size=4, crop_size=48, num_workers=0))
    gen = torch.Generator().manual_seed(0)
    for m in task.modules():  # statistics and scales far from the defaults, so that folding them is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    ckpt = tmp / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def _module(ckpt) -> torch.nn.Module:
    """The checkpoint's model as trained (batch norm not folded): the reference for every check."""
    return SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu", pretrained=None).model.eval()


def _segkit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "segkit.cli", *args, "--config", str(REPO / "configs/voc.yaml")],
                          capture_output=True, text=True, cwd=cwd)


def test_predict_folder_of_two_sizes_with_a_corrupt_file(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a": (64, 80), "b": (90, 70), "c": (64, 80), "d": (90, 70), "e": (33, 47)}
    for stem, (h, w) in sizes.items():
        cv2.imwrite(str(photos / f"{stem}.{'png' if stem == 'b' else 'jpg'}"),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    good = (photos / "a.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    proc = _segkit("predict", "--ckpt_path", str(checkpoint), "--input", str(photos), "--output", str(out),
                   "--batch_size", "2", "--num_workers", "0", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "broken.jpg" in proc.stderr and "wrote 5 of 6 image(s)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.png" for s in sizes] + [f"{s}_overlay.jpg" for s in sizes])

    model, transform, palette = _module(checkpoint), eval_transform(XCEPTION_MEAN, XCEPTION_STD), voc_palette()
    for stem, (h, w) in sizes.items():
        source = next(photos.glob(f"{stem}.*"))
        with Image.open(out / f"{stem}.png") as im:
            assert im.mode == "P" and im.size == (w, h)
            assert np.array(im.getpalette(), np.uint8).reshape(-1, 3)[:21].tolist() == palette[:21].tolist()
            mask = np.array(im)
        with Image.open(out / f"{stem}_overlay.jpg") as im:
            assert im.size == (w, h)
        # the batched, BN-folded prediction equals this image alone through the module as trained
        image = cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2RGB)
        with torch.no_grad():
            alone = model(transform(image=image)["image"][None]).argmax(1)[0].numpy()
        assert (mask == alone).mean() >= 0.999, stem

    # a second run does not replace what the first wrote
    before = (out / "a.png").stat().st_mtime_ns
    again = _segkit("predict", "--ckpt_path", str(checkpoint), "--input", str(photos / "*.jpg"), "--output", str(out),
                    "--num_workers", "0", "--device", "cpu", cwd=tmp_path)
    assert again.returncode != 0 and "already exist" in again.stderr and "--overwrite" in again.stderr
    assert (out / "a.png").stat().st_mtime_ns == before


def test_predict_multi_scale_flip_and_names(checkpoint, tmp_path):
    from segkit.inference import predict_probs
    from segkit.predict import find_images

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    image = np.random.default_rng(1).integers(0, 256, (57, 75, 3), dtype=np.uint8)
    cv2.imwrite(str(photos / "sub" / "x.png"), image)
    cv2.imwrite(str(photos / "x.jpg"), image)
    with pytest.raises(ValueError, match="same output files"):
        find_images(str(photos / "**" / "x.*"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_images(str(photos / "missing"))
    out = tmp_path / "out"
    proc = _segkit("predict", "--ckpt_path", str(checkpoint), "--input", str(photos / "sub" / "*.png"),
                   "--output", str(out), "--scales", "0.75", "1.0", "1.25", "--flip", "--num_workers", "0",
                   "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    x = eval_transform(XCEPTION_MEAN, XCEPTION_STD)(image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB))["image"][None]
    want = predict_probs(_module(checkpoint), x, (0.75, 1.0, 1.25), True).argmax(1)[0].numpy()
    assert (np.array(Image.open(out / "x.png")) == want).mean() >= 0.999


def _reference(ckpt, sizes):
    model = _module(ckpt)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(n, 3, h, w, generator=gen) for n, h, w in sizes]
    with torch.no_grad():
        return inputs, [model(x).numpy() for x in inputs]


SIZES = [(1, 513, 513), (2, 320, 417)]  # the paper's crop, and a batch of a different, non-square size


def test_export_onnx_matches_pytorch(checkpoint, tmp_path):
    import onnx
    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    proc = _segkit("export", "--ckpt_path", str(checkpoint), "--format", "onnx", "--output", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["segkit"])
    assert meta["class_names"] == list(VOC_CLASSES) and meta["num_classes"] == 21
    assert meta["mean"] == pytest.approx(XCEPTION_MEAN) and meta["std"] == pytest.approx(XCEPTION_STD)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("image", ["batch", 3, "height", "width"])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 21, "height", "width"])]
    inputs, wants = _reference(checkpoint, SIZES)
    for x, want in zip(inputs, wants):
        (got,) = session.run(["logits"], {"image": x.numpy()})
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4, x.shape
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), x.shape  # also relative to the logits
    # never replaces a file
    again = _segkit("export", "--ckpt_path", str(checkpoint), "--format", "onnx", "--output", str(path), cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_export_torchscript_matches_pytorch(checkpoint, tmp_path):
    path = tmp_path / "model.pt"
    proc = _segkit("export", "--ckpt_path", str(checkpoint), "--format", "torchscript", "--output", str(path),
                   "--height", "257", "--width", "300", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = {"segkit.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["segkit.json"])
    assert meta["class_names"] == list(VOC_CLASSES) and meta["output_stride"] == 16
    inputs, wants = _reference(checkpoint, SIZES)
    for x, want in zip(inputs, wants):
        with torch.no_grad():
            got = scripted(x).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4, x.shape
