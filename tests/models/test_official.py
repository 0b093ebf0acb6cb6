"""The official DeepLab checkpoints: segkit.models.official converts them, and segkit with a converted
checkpoint computes the official graph's logits (tests/official_tf.py runs that graph in TensorFlow on random
weights and random batch-norm statistics and writes the checkpoint); every error of the converter; whole-model
``pretrained``."""

import re

import numpy as np
import pytest
import torch
from helpers import assert_official, python

from segkit.inference import predict_probs
from segkit.io.tf_bundle import TFCheckpoint
from segkit.models import DeepLabV3Plus, fold_batchnorm
from segkit.models.official import CheckpointError, convert_tf_checkpoint, encoder_names, head_names

ARCHS = ("xception41", "xception65", "xception71")
SIZES = (513, 320)  # odd and even, as the official graph ran in the `official` fixture (every_size)
# variable counts of the official graphs with the VOC head, measured by building them (issue facts)
OFFICIAL_COUNTS = {"xception41": 492, "xception65": 732, "xception71": 802}


def converted_model(prefix: str, arch: str, output_stride: int = 16, num_classes: int = 21) -> DeepLabV3Plus:
    model = DeepLabV3Plus(num_classes, arch, output_stride=output_stride).eval()
    model.load_state_dict({**model.state_dict(), **convert_tf_checkpoint(prefix, model).state})
    return model


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_converted_checkpoint_gives_the_official_logits(arch, official):
    prefix = official(arch, every_size=True)
    root = prefix.rsplit("/", 1)[0]
    names = TFCheckpoint(prefix).names
    assert len(names) == OFFICIAL_COUNTS[arch] + 2  # the model, global_step and one optimizer slot
    switched = converted_model(prefix, arch, output_stride=16)
    switched.set_output_stride(8)  # the paper's protocol: train at 16, evaluate at 8
    models = {
        "OS16": (converted_model(prefix, arch, 16), 16),
        "OS8": (converted_model(prefix, arch, 8), 8),
        "OS16 switched to 8": (switched, 8),
    }
    for size in SIZES:
        image = torch.from_numpy(np.load(f"{root}/image_{size}.npy"))
        for what, (model, output_stride) in models.items():
            with torch.no_grad():
                logits = model(image).numpy()
            assert_official(logits, np.load(f"{root}/logits_{size}_os{output_stride}.npy"), f"{arch} {what} {size}")


def test_the_official_evaluation_protocol(official):
    """eval.py's protocol on the converted model (and folded, as segkit eval runs it): the image padded to the
    eval crop (--pad_to), scales 0.5/0.75/1.0/1.25 of the padded image at the official sizes, flips, the
    official logits resizes, probabilities averaged: the official graph's probabilities to 1e-6."""
    prefix = official("xception41")
    root = prefix.rsplit("/", 1)[0]
    image, want = torch.from_numpy(np.load(f"{root}/eval_image.npy")), np.load(f"{root}/eval_probs.npy")
    model = converted_model(prefix, "xception41")
    for run in (model, fold_batchnorm(model)):
        probs = predict_probs(run, image, (0.5, 0.75, 1.0, 1.25), flip=True, pad_to=(193, 193)).numpy()
        assert np.abs(probs - want).max() < 1e-6 and (probs.argmax(1) == want.argmax(1)).mean() >= 0.9999
    unpadded = predict_probs(model, image, (0.5, 0.75, 1.0, 1.25), flip=True).numpy()
    assert np.abs(unpadded - want).max() > 1e-3  # without the eval crop, the model sees another input


def test_a_data_set_that_ignores_raw_label_0_drops_the_official_logit_0(official, tmp_path):
    """The official ADE20K checkpoints predict 151 classes with ignore label 0 (logit 0 is raw label 0, never a
    target); segkit's ADE20K has the 150 others (reduce_zero_label). Shown on the 21-class graph read for a data
    set of 20 such classes: the converted model gives the official logits 1..20."""
    from segkit.data import FolderDataModule
    from segkit.training.convert import convert

    prefix = official("xception41")
    root = prefix.rsplit("/", 1)[0]
    model = DeepLabV3Plus(20, "xception41").eval()
    converted = convert_tf_checkpoint(prefix, model, zero_label_ignored=True)
    assert converted.num_classes == 20 and "logits/semantic/weights[..., 0]" in converted.dropped
    model.load_state_dict({**model.state_dict(), **converted.state})
    with torch.no_grad():
        logits = model(torch.from_numpy(np.load(f"{root}/image_513.npy"))).numpy()
    assert_official(logits, np.load(f"{root}/logits_513_os16.npy")[:, 1:], "without logit 0")
    with pytest.raises(CheckpointError, match=r"predicts 21 classes, the model 20 \(one more: its logit 0 is raw "):
        convert_tf_checkpoint(prefix, DeepLabV3Plus(20, "xception41"))
    # segkit convert asks the data set
    data = FolderDataModule(
        root=str(tmp_path),
        classes=[f"c{i}" for i in range(20)],
        train_images="images",
        train_masks="masks",
        reduce_zero_label=True,
    )
    report = convert(prefix, str(tmp_path / "x.ckpt"), {"encoder": "xception41"}, data)
    assert "xception41, 20 classes" in report and "logits/semantic/weights[..., 0]" in report
    saved = torch.load(tmp_path / "x.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(saved["model.decoder.classifier.bias"], converted.state["decoder.classifier.bias"])


def test_converting_needs_no_tensorflow(official, tmp_path):
    """With TensorFlow made unimportable, the checkpoint still converts (and the model gives its logits)."""
    prefix = official("xception41")
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import numpy as np, torch\n"
        "from segkit.models import DeepLabV3Plus\n"
        f"model = DeepLabV3Plus(21, 'xception41', pretrained={prefix!r}).eval()\n"
        "assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None\n"
        "print('converted')\n"
    )
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0 and "converted" in proc.stdout, proc.stderr[-2000:]


def test_every_official_variable_has_one_segkit_weight():
    for arch, count in OFFICIAL_COUNTS.items():
        model = DeepLabV3Plus(21, arch)
        names = encoder_names(model.encoder) + head_names()
        keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
        assert len(names) == count and {k for k, _, _ in names} == keys
        assert len({tf for _, tf, _ in names}) == count


VARIANTS = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

source, out = sys.argv[1], sys.argv[2]
reader = tf.train.load_checkpoint(source)
base = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def save(name, values):
    os.makedirs(f"{out}/{name}", exist_ok=True)
    tf.raw_ops.SaveV2(prefix=f"{out}/{name}/model.ckpt", tensor_names=list(values),
                      shape_and_slices=[""] * len(values), tensors=[tf.constant(v) for v in values.values()])


odd = dict(base)
odd["decoder/feature_projection1/weights"] = odd.pop("decoder/feature_projection0/weights")
save("unknown_missing", odd)
odd = dict(base)
odd["aspp0/weights"] = np.zeros((1, 1, 2048, 128), np.float32)
save("shape", odd)
# the zoo's ImageNet checkpoints: the backbone and its ImageNet classifier
imagenet = {k: v for k, v in base.items() if k.startswith("xception_41/")}
imagenet["xception_41/logits/weights"] = np.zeros((1, 1, 2048, 1001), np.float32)
imagenet["xception_41/logits/biases"] = np.zeros(1001, np.float32)
save("imagenet", imagenet)
save("dpc", {"xception_71/entry_flow/conv1_1/weights": np.zeros((3, 3, 3, 32), np.float32),
             "dense_prediction_cell/branch0/weights": np.zeros((1, 1, 2048, 256), np.float32)})
save("resnet", {"resnet_v1_101/conv1_1/weights": np.zeros((3, 3, 3, 64), np.float32),
                "logits/semantic/weights": np.zeros((1, 1, 2048, 21), np.float32)})
save("mobilenet", {"MobilenetV2/Conv/weights": np.zeros((3, 3, 3, 32), np.float32),
                   "logits/semantic/weights": np.zeros((1, 1, 320, 21), np.float32)})
"""


@pytest.fixture(scope="module")
def variants(official, tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    python("-c", VARIANTS, official("xception41"), root, cwd=root, check=True)
    return lambda name: str(root / name / "model.ckpt")


@pytest.mark.slow
def test_converter_errors_name_what_does_not_fit(official, variants):
    prefix = official("xception41")
    cases = [
        (prefix, DeepLabV3Plus(21, "xception65"), r"holds xception_41, the model's encoder is xception65"),
        (prefix, DeepLabV3Plus(19, "xception41"), r"predicts 21 classes, the model 19"),
        (
            variants("unknown_missing"),
            DeepLabV3Plus(21, "xception41"),
            r"1 unknown variable \['decoder/feature_projection1/weights'\]; "
            r"1 missing variable \['decoder/feature_projection0/weights'\]",
        ),
        (
            variants("shape"),
            DeepLabV3Plus(21, "xception41"),
            r"aspp0/weights has shape \(1, 1, 2048, 128\), segkit's aspp.conv1x1.conv.weight needs \(1, 1, 2048, 256\)",
        ),
        (variants("dpc"), DeepLabV3Plus(19, "xception71"), r"dense prediction cell \(DPC\) checkpoint"),
        (variants("mobilenet"), DeepLabV3Plus(21, "xception65"), r"MobileNet checkpoint \(MobilenetV2\)"),
        (
            variants("resnet"),
            DeepLabV3Plus(21, "xception65"),
            r"has the backbone resnet_v1_101; segkit converts the "
            r"official Xception checkpoints",
        ),
        (prefix + "_missing", DeepLabV3Plus(21, "xception41"), r"model.ckpt_missing"),
    ]
    for path, model, message in cases:
        with pytest.raises((CheckpointError, FileNotFoundError), match=message):
            convert_tf_checkpoint(path, model)
    with pytest.raises(ValueError, match="xception_tiny has no official TensorFlow checkpoint"):
        encoder_names(DeepLabV3Plus(21, "xception_tiny").encoder)


def _equal(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.slow
def test_pretrained_official_checkpoint(official, variants, capsys):
    prefix = official("xception41")
    want = converted_model(prefix, "xception41").state_dict()
    same = DeepLabV3Plus(21, "xception41", pretrained=prefix).state_dict()
    assert _equal(same, want, want)
    assert "loaded the whole model (492 tensors, 21 classes)" in capsys.readouterr().out
    # another data set: all but the classifier
    other = DeepLabV3Plus(5, "xception41", pretrained=prefix).state_dict()
    assert _equal(other, want, [k for k in want if not k.startswith("decoder.classifier.")])
    assert other["decoder.classifier.weight"].shape == (5, 256, 1, 1)
    assert re.search(r"classifier is at random \(the checkpoint has 21 classes, the model 5\)", capsys.readouterr().out)
    # the ImageNet backbone: the encoder only
    backbone = DeepLabV3Plus(5, "xception41", pretrained=variants("imagenet")).state_dict()
    encoder = [k for k in want if k.startswith("encoder.")]
    assert _equal(backbone, want, encoder) and not torch.equal(
        backbone["aspp.project.conv.weight"], want["aspp.project.conv.weight"]
    )
    assert "loaded the encoder (" in capsys.readouterr().out
