"""The official TensorFlow DeepLab checkpoints (tensorflow/models, research/deeplab, g3doc/model_zoo.md) as
segkit state dicts.

segkit's DeepLabV3+ has the official graph's structure (the tests run both on the same converted weights), so
converting is renaming and transposing. Variable names follow the official scopes:

========================================================  =====================================================
official variable (``.../weights``, ``.../BatchNorm/*``)   segkit module
========================================================  =====================================================
``xception_NN/entry_flow/conv1_1``, ``conv1_2``            ``encoder.stem.0``, ``encoder.stem.1``
``xception_NN/<flow>/block<b>/unit_<u>/xception_module/``  ``encoder.blocks.<i>``: the units in order (entry
``separable_conv<k>_depthwise|pointwise``, ``shortcut``    blocks, middle-flow units, exit blocks) ->
                                                           ``stack.conv<k>.conv_dw|bn_dw|conv_pw|bn_pw``, ``shortcut``
``aspp0``, ``aspp<r>_depthwise|pointwise`` (r = 1, 2, 3)   ``aspp.conv1x1``, ``aspp.atrous.<r-1>``
``image_pooling``, ``concat_projection``                   ``aspp.pool.proj``, ``aspp.project`` (input channels
                                                           reordered: TF concatenates [pooling, aspp0..3], segkit
                                                           [aspp0..3, pooling])
``decoder/feature_projection0``                            ``decoder.low_proj``
``decoder/decoder_conv<k>_depthwise|pointwise``            ``decoder.refine.<k>``
``logits/semantic/weights``, ``biases``                    ``decoder.classifier.weight``, ``bias``
========================================================  =====================================================

Convolution kernels are HWIO in TF (OIHW in PyTorch), depthwise kernels HWC1 (C1HW); batch norm
``gamma/beta/moving_mean/moving_variance`` are ``weight/bias/running_mean/running_var``.

Every other variable is dropped by a rule in :data:`DROPPED` (training state, not model weights) or is an
error: an unknown or missing variable, a shape that does not fit, another backbone (MobileNet, ResNet) or a
dense prediction cell (DPC) checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.tf_bundle import CheckpointError, TFCheckpoint
from .input_channels import adapt_input_weight, first_conv
from .xception import ARCHS, AlignedXception

# name pattern -> why it is not a model weight; matched against the whole variable name
DROPPED = {
    r"global_step": "the training step counter",
    r".*/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1)": "an optimizer slot (training state)",
    r"beta[12]_power": "Adam's step state",
    r".*/ExponentialMovingAverage": "a moving-average shadow (the official DeepLab code neither writes nor "
    "restores these; the raw variable is used)",
    r"xception_\d+/logits/(weights|biases)": "the ImageNet classifier of a backbone-only checkpoint",
}

BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
OFFICIAL_ARCHS = {"xception41": "xception_41", "xception65": "xception_65", "xception71": "xception_71"}


def is_tf_checkpoint(source: str | Path) -> bool:
    """True when ``source`` is a TensorFlow checkpoint prefix (``PREFIX.index`` exists)."""
    return Path(f"{source}.index").is_file()


def _unit_scopes(encoder: AlignedXception) -> list[str]:
    """The official ``<flow>/block<b>/unit_<u>`` scope of each segkit block, in order."""
    cfgs = ARCHS[encoder.arch][1]
    middle = [i for i, c in enumerate(cfgs) if c.stride == 1 and not c.no_skip and c.in_chs == c.out_chs[-1]]
    scopes = [f"entry_flow/block{i + 1}/unit_1" for i in range(middle[0])]
    scopes += [f"middle_flow/block1/unit_{u + 1}" for u in range(len(middle))]
    return scopes + ["exit_flow/block1/unit_1", "exit_flow/block2/unit_1"]


def _conv_bn(module: str, scope: str, weight_kind: str = "conv") -> list[tuple[str, str, str]]:
    """(segkit key, TF name, kind) of a convolution and its batch norm; ``module`` is a ConvBnAct."""
    return [(f"{module}.conv.weight", f"{scope}/weights", weight_kind)] + [
        (f"{module}.bn.{k}", f"{scope}/BatchNorm/{v}", "vector") for k, v in BN.items()
    ]


def _separable(module: str, scope: str) -> list[tuple[str, str, str]]:
    """A segkit SeparableConv2d from the official ``<scope>_depthwise`` and ``<scope>_pointwise``."""
    out = [
        (f"{module}.conv_dw.weight", f"{scope}_depthwise/depthwise_weights", "depthwise"),
        (f"{module}.conv_pw.weight", f"{scope}_pointwise/weights", "conv"),
    ]
    for part, bn in (("depthwise", "bn_dw"), ("pointwise", "bn_pw")):
        out += [(f"{module}.{bn}.{k}", f"{scope}_{part}/BatchNorm/{v}", "vector") for k, v in BN.items()]
    return out


def encoder_names(encoder: AlignedXception, prefix: str = "encoder.") -> list[tuple[str, str, str]]:
    """(segkit key, official variable name, kind) for every weight of an Aligned Xception encoder."""
    if encoder.arch not in OFFICIAL_ARCHS:
        raise ValueError(
            f"encoder {encoder.arch} has no official TensorFlow checkpoint; use one of {sorted(OFFICIAL_ARCHS)}"
        )
    tf = OFFICIAL_ARCHS[encoder.arch]
    names = _conv_bn(f"{prefix}stem.0", f"{tf}/entry_flow/conv1_1") + _conv_bn(
        f"{prefix}stem.1", f"{tf}/entry_flow/conv1_2"
    )
    for i, (block, scope) in enumerate(zip(encoder.blocks, _unit_scopes(encoder))):
        module = f"{tf}/{scope}/xception_module"
        for k in (1, 2, 3):
            names += _separable(f"{prefix}blocks.{i}.stack.conv{k}", f"{module}/separable_conv{k}")
        if block.shortcut is not None:
            names += _conv_bn(f"{prefix}blocks.{i}.shortcut", f"{module}/shortcut")
    return names


def head_names() -> list[tuple[str, str, str]]:
    """(segkit key, official variable name, kind) for ASPP, the decoder and the classifier."""
    names = _conv_bn("aspp.conv1x1", "aspp0") + _conv_bn("aspp.pool.proj", "image_pooling")
    names += [n for r in (1, 2, 3) for n in _separable(f"aspp.atrous.{r - 1}", f"aspp{r}")]
    names += _conv_bn("aspp.project", "concat_projection", weight_kind="concat_projection")
    names += _conv_bn("decoder.low_proj", "decoder/feature_projection0")
    names += [n for k in (0, 1) for n in _separable(f"decoder.refine.{k}", f"decoder/decoder_conv{k}")]
    return names + [
        ("decoder.classifier.weight", "logits/semantic/weights", "conv"),
        ("decoder.classifier.bias", "logits/semantic/biases", "vector"),
    ]


# TF layout -> PyTorch layout, as a permutation of the TF axes: HWIO -> OIHW, depthwise HWC1 -> C1HW
TO_TORCH = {"conv": (3, 2, 0, 1), "concat_projection": (3, 2, 0, 1), "depthwise": (2, 3, 0, 1)}


def _to_torch(value: np.ndarray, kind: str) -> torch.Tensor:
    if kind in TO_TORCH:
        value = value.transpose(TO_TORCH[kind])
    if kind == "concat_projection":  # input channels [pooling, aspp0, aspp1, aspp2, aspp3] -> [aspp0..3, pooling]
        value = np.roll(value, -value.shape[1] // 5, axis=1)
    return torch.from_numpy(np.ascontiguousarray(value))


def _backbone(names: list[str], prefix: str) -> str:
    """The checkpoint's backbone scope, with errors for the kinds of official checkpoint segkit cannot load."""
    if any(n.startswith("dense_prediction_cell") for n in names):
        raise CheckpointError(
            f"{prefix} is a dense prediction cell (DPC) checkpoint; segkit implements "
            "DeepLabV3+ with ASPP and converts those checkpoints only"
        )
    tops = {n.split("/")[0] for n in names if "/" in n}
    for top in sorted(tops):
        if top.lower().startswith("mobilenet"):
            raise CheckpointError(
                f"{prefix} is a MobileNet checkpoint ({top}); segkit converts the official "
                f"Xception checkpoints ({', '.join(OFFICIAL_ARCHS.values())}) only"
            )
    backbones = sorted(t for t in tops if t.startswith(("xception_", "resnet_", "nas_")))
    if not backbones:
        raise CheckpointError(f"{prefix} holds no DeepLab backbone variables (scopes: {sorted(tops)[:8]})")
    if len(backbones) > 1 or backbones[0] not in OFFICIAL_ARCHS.values():
        raise CheckpointError(
            f"{prefix} has the backbone {', '.join(backbones)}; segkit converts the official "
            f"Xception checkpoints ({', '.join(OFFICIAL_ARCHS.values())}) only"
        )
    return backbones[0]


@dataclass
class Converted:
    """A converted checkpoint: segkit model keys, and what was dropped by which rule."""

    state: dict[str, torch.Tensor]
    encoder: str  # segkit's name, e.g. xception65
    num_classes: int | None  # None for a backbone-only (ImageNet) checkpoint
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def whole_model(self) -> bool:
        return self.num_classes is not None


def _tf_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The TF shape of a segkit tensor of ``shape`` (the inverse of :data:`TO_TORCH`)."""
    if kind not in TO_TORCH:
        return shape
    tf = [0] * len(shape)
    for torch_axis, tf_axis in enumerate(TO_TORCH[kind]):
        tf[tf_axis] = shape[torch_axis]
    return tuple(tf)


def convert_tf_checkpoint(
    prefix: str | Path, model: nn.Module, other_classes: bool = False, zero_label_ignored: bool = False
) -> Converted:
    """Reads an official DeepLab checkpoint for ``model`` (a :class:`~segkit.models.DeepLabV3Plus` with an
    Xception encoder, which gives the expected names and shapes).

    A checkpoint with ASPP, decoder and logits gives the whole model; one with the backbone alone (the zoo's
    ImageNet ``xception_41/65/71``) gives ``encoder.*``. The checkpoint's class count must be the model's, or,
    with ``other_classes`` (fine-tuning on another data set), the classifier is left out. With
    ``zero_label_ignored`` (a data set that ignores raw label 0 and numbers the others from 0, as segkit's ADE20K),
    a checkpoint with one class more whose logit 0 is that raw label (the official ADE20K models: 151 logits,
    ignore label 0) converts without logit 0. Raises :class:`CheckpointError` naming the file and the variable
    for anything that does not fit.
    """
    ckpt = TFCheckpoint(prefix)
    names = ckpt.names
    backbone = _backbone(names, str(prefix))
    encoder = model.encoder
    arch = getattr(encoder, "arch", type(encoder).__name__)
    if OFFICIAL_ARCHS.get(arch) != backbone:
        raise CheckpointError(
            f"{prefix} holds {backbone}, the model's encoder is {arch}: set the encoder to {backbone.replace('_', '')}"
        )
    whole = "logits/semantic/weights" in names
    expected = encoder_names(encoder) + (head_names() if whole else [])
    own = model.state_dict()
    num_classes, skip = None, 0  # skip: leading logits left out (1: raw label 0, which the data set ignores)
    if whole:
        num_classes = ckpt.shape("logits/semantic/weights")[-1]
        model_classes = own["decoder.classifier.bias"].numel()
        skip = int(zero_label_ignored and num_classes == model_classes + 1)
        if num_classes != model_classes and not other_classes and not skip:
            hint = (
                (
                    " (one more: its logit 0 is raw label 0, which a data set with data.reduce_zero_label ignores, "
                    "as segkit's ADE20K does)"
                )
                if num_classes == model_classes + 1
                else ""
            )
            raise CheckpointError(f"{prefix} predicts {num_classes} classes, the model {model_classes}{hint}")
        num_classes -= skip
    dropped = _dropped_variables(names, {tf for _, tf, _ in expected}, prefix, arch)
    state = {}
    stem = f"encoder.{first_conv(encoder)[0]}.weight"  # RGB in the checkpoint, any bands in the model
    for key, tf, kind in expected:
        classifier = key.startswith("decoder.classifier.")
        if classifier and num_classes != own[key].shape[0]:
            continue  # other_classes: the classifier stays at random
        shape = tuple(own[key].shape)
        want = _tf_shape((shape[0], 3, *shape[2:]) if key == stem else shape, kind)
        if classifier and skip:  # TF keeps the classes on the last axis
            want = (*want[:-1], want[-1] + skip)
            dropped[f"{tf}[..., 0]"] = "the logit of raw label 0, which the data set ignores"
        if ckpt.shape(tf) != want:
            raise CheckpointError(
                f"{prefix}: variable {tf} has shape {ckpt.shape(tf)}, segkit's {key} needs "
                f"{want} (as {tuple(own[key].shape)} in PyTorch's layout)"
            )
        value = ckpt.read(tf)
        state[key] = _to_torch(value[..., skip:] if classifier else value, kind).to(own[key].dtype)
        if key == stem:
            state[key] = adapt_input_weight(state[key], shape[1])
    return Converted(state, arch, num_classes, dropped)


def _dropped_variables(names, mapped: set[str], prefix, arch: str) -> dict[str, str]:
    """The checkpoint's variables that segkit leaves out, with why (:data:`DROPPED`); raises naming the variables
    that are neither mapped nor known to be left out, and the mapped ones the checkpoint lacks."""
    dropped, unknown = {}, []
    for name in names:
        if name in mapped:
            continue
        rule = next((why for pattern, why in DROPPED.items() if re.fullmatch(pattern, name)), None)
        if rule is None:
            unknown.append(name)
        else:
            dropped[name] = rule
    missing = sorted(mapped - set(names))
    if unknown or missing:
        raise CheckpointError(
            f"{prefix} does not fit a DeepLabV3+ {arch}: "
            + "; ".join(
                f"{len(v)} {what} variable{'s' * (len(v) > 1)} {v[:5]}{' ...' if len(v) > 5 else ''}"
                for what, v in (("unknown", unknown), ("missing", missing))
                if v
            )
        )
    return dropped
