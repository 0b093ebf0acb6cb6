"""Whole-model pretrained weights: an official TensorFlow DeepLab checkpoint or a segkit checkpoint, for
fine-tuning (``--model.pretrained``).

The whole model is initialized when the class count matches; on another data set (another class count) the
encoder, ASPP and decoder are, and the classifier stays at random; a backbone-only checkpoint (the zoo's
ImageNet Xception, a timm or smp encoder file) initializes the encoder (see :func:`build_encoder`). What was
loaded and what was left at random is reported in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .encoders import WEIGHT_FILE_SUFFIXES, load_weights_file
from .input_channels import adapt_input_weight, first_conv
from .official import convert_tf_checkpoint, is_tf_checkpoint

CLASSIFIER = "decoder.classifier."


def _model_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The model keys of a segkit checkpoint or DeepLabV3Plus state dict, None when it holds no ASPP."""
    for prefix in ("model.", ""):
        if any(k.startswith(f"{prefix}aspp.") for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return None


def read_pretrained(source: str | Path | None) -> tuple[bool, dict[str, torch.Tensor] | None]:
    """(whether ``source`` holds a whole model, the contents of ``source`` when it is a weights file).

    A whole model: a TF checkpoint prefix, or a weights file with ASPP weights (a segkit checkpoint or model).
    The file is read here once, and its contents passed on to whichever loader takes them.
    """
    if source is None:
        return False, None
    if is_tf_checkpoint(source):
        return True, None
    path = Path(source)
    if not (path.is_file() and path.suffix in WEIGHT_FILE_SUFFIXES):
        return False, None  # a timm or smp weights name, or a missing file (reported by build_encoder)
    state = load_weights_file(path)
    return _model_keys(state) is not None, state


def load_pretrained(model: nn.Module, source: str | Path, state: dict[str, torch.Tensor] | None = None) -> str:
    """Loads a whole-model checkpoint into ``model`` (a DeepLabV3Plus) and says what was loaded; ``state``: the
    file's contents when already read."""
    own = model.state_dict()
    if is_tf_checkpoint(source):
        converted = convert_tf_checkpoint(source, model, other_classes=True)
        state, theirs = converted.state, converted.num_classes
        if not converted.whole_model:
            model.load_state_dict({**own, **state})
            return (
                f"pretrained {source}: loaded the encoder ({len(state)} tensors, a backbone-only checkpoint); "
                "ASPP, decoder and classifier are at random"
            )
    else:
        state = _model_keys(state if state is not None else load_weights_file(source)) or {}
        theirs = state[f"{CLASSIFIER}bias"].numel() if f"{CLASSIFIER}bias" in state else None
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    stem = f"encoder.{first_conv(model.encoder)[0]}.weight"
    if stem in state and state[stem].shape[1] == 3 and own[stem].shape[1] != 3:  # an RGB model for other bands
        state[stem] = adapt_input_weight(state[stem], own[stem].shape[1])
    ours = own[f"{CLASSIFIER}bias"].numel()
    if theirs != ours:
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER)}
    needed = [
        k for k in own if not k.endswith("num_batches_tracked") and (theirs == ours or not k.startswith(CLASSIFIER))
    ]
    missing = [k for k in needed if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs the model's {tuple(own[k].shape)}"
        for k in needed
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:

        def show(keys: list[str]) -> str:
            return f"{len(keys)} {keys[:5]}{' ...' if len(keys) > 5 else ''}"

        raise ValueError(
            f"pretrained {source} does not fit the model: missing keys {show(missing)}; unexpected "
            f"keys {show(unexpected)}; shape mismatches {show(shapes)}"
        )
    model.load_state_dict({**own, **state})
    if theirs == ours:
        return f"pretrained {source}: loaded the whole model ({len(state)} tensors, {ours} classes)"
    return (
        f"pretrained {source}: loaded encoder, ASPP and decoder ({len(state)} tensors); the classifier is at "
        f"random (the checkpoint has {theirs} classes, the model {ours})"
    )
