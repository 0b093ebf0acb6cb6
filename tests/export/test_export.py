"""`segkit export` to ONNX (run in ONNX Runtime) and TorchScript: the same logits as the PyTorch model as
trained (batch norm folded in the files), dynamic sizes, metadata, nothing overwritten."""

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import CONFIGS, run_here, trained_module

from segkit.data.transforms import XCEPTION_MEAN, XCEPTION_STD
from segkit.data.voc import VOC_CLASSES


def _export(capsys, *args, cwd):
    return run_here(capsys, "export", *args, "--config", CONFIGS / "voc.yaml", cwd=cwd)


def _reference(ckpt, sizes):
    model = trained_module(ckpt)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(n, 3, h, w, generator=gen) for n, h, w in sizes]
    with torch.no_grad():
        return inputs, [model(x).numpy() for x in inputs]


SIZES = [(1, 513, 513), (2, 320, 417)]  # the paper's crop, and a batch of a different, non-square size


@pytest.mark.slow
def test_export_onnx_matches_pytorch(random_bn_checkpoint, tmp_path, capsys):
    checkpoint = random_bn_checkpoint
    import onnx
    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    proc = _export(capsys, "--ckpt_path", str(checkpoint), "--format", "onnx", "--output", str(path), cwd=tmp_path)
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
    # never replaces a file (in this process: the check comes before anything is built)
    from segkit.commands import main

    with pytest.raises(SystemExit) as again:
        main(
            [
                "export",
                "--config",
                str(CONFIGS / "voc.yaml"),
                "--ckpt_path",
                str(checkpoint),
                "--format",
                "onnx",
                "--output",
                str(path),
            ]
        )
    assert "already exists" in str(again.value.code)


def test_export_torchscript_matches_pytorch(random_bn_checkpoint, tmp_path, capsys):
    checkpoint = random_bn_checkpoint
    path = tmp_path / "model.pt"
    with warnings.catch_warnings(record=True) as caught:  # nothing of PyTorch's chatter reaches the user
        warnings.simplefilter("always")
        proc = _export(
            capsys,
            "--ckpt_path",
            str(checkpoint),
            "--format",
            "torchscript",
            "--output",
            str(path),
            "--height",
            "257",
            "--width",
            "300",
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [str(w.message) for w in caught if "segkit" in w.filename or "torch" in w.filename], caught
    extra = {"segkit.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["segkit.json"])
    assert (
        meta["class_names"] == list(VOC_CLASSES)
        and meta["settings"]["output_stride"] == 16
        and meta["form"] == "logits"
    )
    inputs, wants = _reference(checkpoint, SIZES)
    for x, want in zip(inputs, wants):
        with torch.no_grad():
            got = scripted(x).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4, x.shape
