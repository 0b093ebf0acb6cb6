"""Shipping a model with known accuracy: `segkit export --quantize int8` (QDQ, per-channel weights, calibrated on
training images chosen by a seed), `--verify` (what it stores equals what `segkit eval --model_file` and the
checkpoint measure), `segkit eval --model_file` for every export form, and one-line errors for files that do
not fit."""

import json
import shutil

import numpy as np
import onnx
import pytest
from helpers import CONFIGS, run_here

from segkit.export.quantize import calibration_indices
from segkit.inference.segmenter import Segmenter
from segkit.io.exported_metadata import read_metadata, write_metadata

DATA = ("--data.num_workers", "0")


def _run(capsys, *args, root, cwd):
    return run_here(capsys, *args, "--config", CONFIGS / "voc.yaml", "--data.root", root, *DATA, cwd=cwd)


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _scores(capsys, tmp_path, root, *source):
    out = tmp_path / f"scores{len(list(tmp_path.glob('scores*')))}.json"
    _ok(_run(capsys, "eval", *source, "--json", out, root=root, cwd=tmp_path))
    return json.loads(out.read_text())


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def test_int8_end_to_end_is_quantized_calibrated_and_verified(varied_checkpoint, tiny_voc, tmp_path, capsys):
    path = tmp_path / "int8.onnx"
    args = ("--end_to_end", "--quantize", "int8", "--calibration_images", "4", "--verify", "--output", path)
    proc = _ok(_run(capsys, "export", "--ckpt_path", varied_checkpoint, *args, root=tiny_voc, cwd=tmp_path))
    assert "end-to-end INT8" in proc.stdout and "stored in the file" in proc.stdout
    proto = onnx.load(str(path))
    initializers = {t.name: t for t in proto.graph.initializer}
    producers = _producers(proto)
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) > 20
    for conv in convs:  # activations uint8 per tensor, weights int8 per output channel
        data, weight = (producers[conv.input[i]] for i in (0, 1))
        assert data.op_type == weight.op_type == "DequantizeLinear", conv.name
        assert initializers[data.input[2]].data_type == onnx.TensorProto.UINT8
        w, scale = initializers[weight.input[0]], initializers[weight.input[1]]
        assert w.data_type == onnx.TensorProto.INT8 and list(scale.dims) == [w.dims[0]] and w.dims[0] > 1
    meta = read_metadata(path)
    q = meta["quantization"]
    assert (q["calibration_images"], q["calibration_split"], q["seed"], q["format"]) == (4, "train", 0, "QDQ")
    v = meta["verification"]
    assert v["split"] == "val" and v["num_images"] == 5
    # what the file stores is what segkit eval measures, of the file and of the checkpoint
    assert v["mIoU"] == pytest.approx(_scores(capsys, tmp_path, tiny_voc, "--model_file", path)["mIoU"], abs=1e-9)
    assert v["checkpoint_mIoU"] == pytest.approx(
        _scores(capsys, tmp_path, tiny_voc, "--ckpt_path", varied_checkpoint)["mIoU"], abs=1e-9
    )
    from segkit.data import VOCDataModule

    val = VOCDataModule(root=str(tiny_voc), batch_size=1, crop_size=48).split_dataset("val")
    images = [val.load(i)[0] for i in range(len(val))]
    ours, theirs = Segmenter(path)(images), Segmenter(varied_checkpoint)(images)
    agreement = sum(int((a == b).sum()) for a, b in zip(ours, theirs)) / sum(a.size for a in ours)
    # (how close eight bits stay is measured on a trained model, tools/benchmark.py deploy: this one's logits
    # differ between classes by less than its activations' quantization steps)
    assert v["pixel_agreement"] == pytest.approx(agreement, abs=1e-12)


def test_int8_logits_form_keeps_depthwise_convolutions_float(varied_checkpoint, tiny_voc, tmp_path, capsys):
    path = tmp_path / "int8.onnx"
    args = ("--quantize", "int8", "--keep_float", "depthwise", "--calibration_images", "2", "--output", path)
    _ok(_run(capsys, "export", "--ckpt_path", varied_checkpoint, *args, root=tiny_voc, cwd=tmp_path))
    proto = onnx.load(str(path))
    producers = _producers(proto)
    grouped = {
        n.name: producers.get(n.input[1])
        for n in proto.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    }
    assert grouped and all(p is None or p.op_type != "DequantizeLinear" for p in grouped.values())
    others = [n for n in proto.graph.node if n.op_type == "Conv" and n.name not in grouped]
    assert others and all(producers[n.input[1]].op_type == "DequantizeLinear" for n in others)
    assert read_metadata(path)["quantization"]["convs_kept_float"] == len(grouped)
    # the logits form scores as the checkpoint does, up to eight bits
    scores = _scores(capsys, tmp_path, tiny_voc, "--model_file", path)
    assert scores["form"] == "logits" and scores["quantization"]["kept_float"] == ["depthwise"]


def test_calibration_images_are_chosen_by_seed_and_unreadable_ones_named(varied_checkpoint, tiny_voc, tmp_path, capsys):
    assert calibration_indices(12, 4) == calibration_indices(12, 4) != calibration_indices(12, 4, seed=1)
    assert calibration_indices(3, 100) == [0, 1, 2] and len(set(calibration_indices(300, 100))) == 100
    root = tmp_path / "voc"
    shutil.copytree(tiny_voc, root)
    for jpeg in (root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("synth_train_*.jpg"):
        jpeg.write_bytes(jpeg.read_bytes()[:100])  # truncated
    path = tmp_path / "int8.onnx"
    proc = _run(
        capsys,
        "export",
        "--ckpt_path",
        varied_checkpoint,
        "--end_to_end",
        "--quantize",
        "int8",
        "--output",
        path,
        root=root,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "calibration image" in proc.stderr and "synth_train_" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not path.exists() and not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("tmp*"))


def test_eval_model_file_scores_each_form_as_its_checkpoint(
    varied_checkpoint, end_to_end_onnx, tiny_voc, tmp_path, capsys
):
    want = _scores(capsys, tmp_path, tiny_voc, "--ckpt_path", varied_checkpoint)
    for fmt in ("onnx", "torchscript"):
        path = tmp_path / f"logits.{fmt}"
        _ok(
            _run(
                capsys,
                "export",
                "--ckpt_path",
                varied_checkpoint,
                "--format",
                fmt,
                "--output",
                path,
                "--verify",
                root=tiny_voc,
                cwd=tmp_path,
            )
        )
        got = _scores(capsys, tmp_path, tiny_voc, "--model_file", path)
        assert got["mIoU"] == pytest.approx(want["mIoU"], abs=1e-4) and got["form"] == "logits", fmt
        stored = read_metadata(path)["verification"]  # written into the ONNX file, or the TorchScript archive
        assert stored["mIoU"] == pytest.approx(got["mIoU"], abs=1e-9) and stored["pixel_agreement"] > 0.999, fmt
    got = _scores(capsys, tmp_path, tiny_voc, "--model_file", end_to_end_onnx)
    assert got["mIoU"] == pytest.approx(want["mIoU"], abs=1e-4) and got["form"] == "end_to_end"
    assert got["num_images"] == 5 and got["scales"] == [1.0] and got["output_stride"] == 16


def test_files_that_do_not_fit_get_one_line(varied_checkpoint, end_to_end_onnx, tiny_voc, tmp_path, capsys):
    other = tmp_path / "other.onnx"
    shutil.copy(end_to_end_onnx, other)
    meta = read_metadata(other)
    write_metadata(other, {**meta, "class_names": ["sky", *meta["class_names"][1:]]})
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    (tmp_path / "text.onnx").write_text("not a model")
    cases = {
        other: "predicts 21 classes (sky, aeroplane",
        foreign: "has no segkit metadata: give a file written by segkit export",
        varied_checkpoint: "is a PyTorch checkpoint, not an exported model: give it as --ckpt_path",
        tmp_path / "text.onnx": "is not an ONNX model",
        tmp_path / "missing.onnx": "model file not found",
    }
    for path, message in cases.items():
        proc = _run(capsys, "eval", "--model_file", path, root=tiny_voc, cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr, (path, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = _run(capsys, "eval", "--model_file", end_to_end_onnx, "--flip", root=tiny_voc, cwd=tmp_path)
    assert proc.returncode == 2 and "runs with the settings baked into it" in proc.stderr
    proc = _run(
        capsys, "eval", "--model_file", end_to_end_onnx, "--ckpt_path", varied_checkpoint, root=tiny_voc, cwd=tmp_path
    )
    assert proc.returncode == 2 and "give one of --ckpt_path" in proc.stderr
    assert np.asarray(read_metadata(end_to_end_onnx)["palette"]).shape == (21, 3)
