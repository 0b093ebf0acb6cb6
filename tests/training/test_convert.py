"""`segkit convert`: an official checkpoint becomes a file that every segkit command takes with the config, and
that file computes the official graph's logits (in PyTorch and exported to ONNX)."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import CONFIGS, assert_official, cli, segkit_here

from segkit.commands import main
from segkit.data.base import read_label_png
from segkit.inference import load_inference_model


def _config(tiny_voc):
    return cli(config=CONFIGS / "voc.yaml", data__root=tiny_voc, model__encoder="xception41", data__num_workers=0)


@pytest.mark.slow
def test_convert_then_validate_eval_predict_export(official, tiny_voc, tmp_path, capsys):
    prefix = official("xception41", every_size=True)
    root = prefix.rsplit("/", 1)[0]
    config = _config(tiny_voc)
    ckpt = tmp_path / "xception41.ckpt"
    out = segkit_here(capsys, "convert", "--tf_checkpoint", prefix, *config, "--output", ckpt)
    assert (
        "xception41, 21 classes, 492 variables converted; dropped global_step, logits/semantic/weights/Momentum" in out
    )
    assert "W&B" not in out  # the config's logger is not built

    # the file is the official model, as inference runs it (batch norm folded), at both output strides
    image = torch.from_numpy(np.load(f"{root}/image_513.npy"))
    for output_stride in (16, 8):
        with torch.no_grad():
            logits = load_inference_model(ckpt, 21, output_stride)(image).numpy()
        want = np.load(f"{root}/logits_513_os{output_stride}.npy")
        assert_official(logits, want, f"converted file OS{output_stride}")

    # --model.pretrained takes the converted file: the whole model, or all but the classifier for 5 classes
    from segkit.models import DeepLabV3Plus

    saved = {k[len("model.") :]: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()}
    whole = DeepLabV3Plus(21, "xception41", pretrained=str(ckpt)).state_dict()
    assert all(torch.equal(whole[k], v) for k, v in saved.items())
    other = DeepLabV3Plus(5, "xception41", pretrained=str(ckpt)).state_dict()
    assert all(torch.equal(other[k], v) for k, v in saved.items() if not k.startswith("decoder.classifier."))
    assert other["decoder.classifier.bias"].shape == (5,)

    # eval and LightningCLI's validate score the same model on the same images
    segkit_here(
        capsys,
        "eval",
        *config,
        "--ckpt_path",
        ckpt,
        "--json",
        tmp_path / "scores.json",
        "--save_predictions",
        tmp_path / "eval",
        "--device",
        "cpu",
    )
    miou = json.loads((tmp_path / "scores.json").read_text())["mIoU"]
    out = segkit_here(
        capsys,
        "validate",
        *config,
        "--ckpt_path",
        ckpt,
        "--model.pretrained",
        "null",
        "--trainer.logger",
        "false",
        "--trainer.callbacks",
        "null",
        "--trainer.precision",
        "32",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        tmp_path,
    )
    validated = re.findall(r"^\W*val/mIoU\W+(\d\.\d+(?:e-\d+)?)\W*$", out, re.M)
    assert validated and all(float(v) == pytest.approx(miou, rel=1e-5) for v in validated), (validated, miou)

    # predict writes the masks eval scored
    images = tiny_voc / "VOCdevkit" / "VOC2012" / "JPEGImages"
    val = (tiny_voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for name in val:
        (tmp_path / "inputs").mkdir(exist_ok=True)
        (tmp_path / "inputs" / f"{name}.jpg").write_bytes((images / f"{name}.jpg").read_bytes())
    segkit_here(
        capsys,
        "predict",
        *config,
        "--ckpt_path",
        ckpt,
        "--input",
        tmp_path / "inputs",
        "--output",
        tmp_path / "predicted",
        "--device",
        "cpu",
        "--num_workers",
        "0",
    )
    for name in val:
        assert np.array_equal(
            read_label_png(tmp_path / "predicted" / f"{name}.png"), read_label_png(tmp_path / "eval" / f"{name}.png")
        ), name

    # ONNX: the official logits too
    import onnxruntime as ort

    onnx = tmp_path / "xception41.onnx"
    segkit_here(capsys, "export", *config, "--ckpt_path", ckpt, "--format", "onnx", "--output", onnx)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": image.numpy()})
    assert_official(logits, np.load(f"{root}/logits_513_os16.npy"), "ONNX")


def _convert_error(*args) -> str:
    """The one-line message `segkit convert ARGS` exits with (run in this process)."""
    with pytest.raises(SystemExit) as exit:
        main(["convert", *(str(a) for a in args)])
    message = str(exit.value.code)
    assert message.startswith("segkit convert: ") and "\n" not in message
    return message


def test_convert_errors(official, tiny_voc, tmp_path):
    prefix = official("xception41")
    config = _config(tiny_voc)
    # the config's encoder must be the checkpoint's
    assert "holds xception_41, the model's encoder is xception65" in _convert_error(
        "--tf_checkpoint", prefix, *config, "--model.encoder", "xception65", "--output", tmp_path / "a.ckpt"
    )
    # and its data set's class count (Cityscapes: 19)
    assert "predicts 21 classes, the model 19" in _convert_error(
        "--tf_checkpoint",
        prefix,
        "--config",
        CONFIGS / "cityscapes.yaml",
        "--model.encoder",
        "xception41",
        "--output",
        tmp_path / "b.ckpt",
    )
    assert "nothing/model.ckpt.index not found" in _convert_error(
        "--tf_checkpoint", tmp_path / "nothing/model.ckpt", *config, "--output", tmp_path / "c.ckpt"
    )
    # an existing file is never replaced
    (tmp_path / "d.ckpt").write_text("mine")
    assert "does not overwrite" in _convert_error("--tf_checkpoint", prefix, *config, "--output", tmp_path / "d.ckpt")
    assert (tmp_path / "d.ckpt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.ckpt"]  # no partial or temporary files
