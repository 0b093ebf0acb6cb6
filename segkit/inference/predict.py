"""Inference, the one home of what ``segkit eval``, ``predict`` and ``export``, the W&B dashboard and
``trainer.predict`` run: a checkpoint's model as inference runs it, class probabilities as the DeepLab
papers evaluate (multi-scale inputs, left-right flips, sliding windows), and class-index maps.

Following the official ``predict_labels_multi_scale`` and ``multi_scale_logits`` (and equal to them, tests/
test_official.py), each scale (and its flipped copy) is run separately at the official sizes, its logits are
resized back to the input size as the official code resizes them and turned into class probabilities, and the
probabilities are averaged; ``pad_to`` pads the image first as the official evaluation's crop size does.
They are added to one running sum one scale and flip at a time, so peak memory stays that of the largest
single pass plus one (B, K, H, W) buffer. Images larger than ``window`` are cut into overlapping
windows whose logits are averaged where they overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..head import Head
from ..io.torch_files import CheckpointFileError, read_checkpoint
from ..models import DeepLabV3Plus, fold_batchnorm
from ..models.decoder import resize

# the DeepLabV3Plus arguments that a segkit checkpoint's hyper-parameters hold (SegmentationTask's own names)
MODEL_ARGS = (
    "num_classes",
    "encoder",
    "output_stride",
    "atrous_rates",
    "decoder_channels",
    "dropout",
    "in_channels",
    "multilabel",
)


def load_inference_model(
    ckpt_path: str | Path, num_classes: int | None = None, output_stride: int | None = None
) -> nn.Module:
    """The model of a ``segkit fit`` checkpoint as inference runs it: eval mode, batch norm folded into the
    convolutions (:func:`~segkit.models.fold_batchnorm`), optionally at another output stride.

    A sigmoid model carries the checkpoint's decision thresholds as ``model.thresholds`` (one per class of a
    multi-label model, one for the foreground of a binary model, 0.5 when none were tuned), which its
    :class:`~segkit.head.Head` applies.

    The model is rebuilt from the checkpoint's hyper-parameters and ``model.*`` weights (Lightning's format;
    nothing is downloaded). ``num_classes``, when given, must be the checkpoint's (the config's data set).
    """
    return checkpoint_model(read_checkpoint(ckpt_path), ckpt_path, num_classes, output_stride)


def checkpoint_model(
    checkpoint: dict, ckpt_path: str | Path, num_classes: int | None = None, output_stride: int | None = None
) -> nn.Module:
    """:func:`load_inference_model` of a checkpoint already read (``ckpt_path`` names it in errors)."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "num_classes" not in hparams:
        raise CheckpointFileError(
            f"checkpoint {ckpt_path} has no segkit hyper-parameters (num_classes, encoder): "
            "give a file written by segkit fit or segkit convert"
        )
    if num_classes is not None and hparams["num_classes"] != num_classes:
        raise ValueError(
            f"checkpoint {ckpt_path} predicts {hparams['num_classes']} classes, the config's data set "
            f"has {num_classes}: use the config the model was trained with"
        )
    binary = hparams.get("head") == "sigmoid" and not hparams.get("multilabel")  # one output for two classes
    model = DeepLabV3Plus(**{k: hparams[k] for k in MODEL_ARGS if k in hparams}, binary=binary, pretrained=None)
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    )
    if output_stride is not None:
        model.set_output_stride(output_stride)
    model = fold_batchnorm(model)
    if model.multilabel or model.binary:
        model.thresholds = list(checkpoint.get("segkit_thresholds") or [0.5] * model.decoder.classifier.out_channels)
    return model


def label_maps(head: Head, probs: torch.Tensor, sizes: Sequence[tuple[int, int]] | None = None) -> list[torch.Tensor]:
    """(B, K, H, W) class probabilities -> one decision per image (:meth:`~segkit.head.Head.decide`: an (h, w)
    map of class indices, or a multi-label head's (K, h, w) booleans), cropped to ``sizes`` (images padded at
    the bottom/right in a batch) or kept whole."""
    labels = head.decide(probs)
    if sizes is None:
        return list(labels)
    return [label[..., :h, :w] for label, (h, w) in zip(labels, sizes)]


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]  # the last window ends at the border


def sliding_logits(model: nn.Module, image: torch.Tensor, window: int | None, overlap: float = 1 / 3) -> torch.Tensor:
    """Logits (B, K, H, W) of ``image`` (B, 3, H, W); windows of ``window`` x ``window`` when the image is larger.

    Images smaller than the window in a dimension are zero-padded (the normalized mean) to the window there.
    """
    h, w = image.shape[-2:]
    if window is None or (h <= window and w <= window):
        return model(image)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    ph, pw = max(h, window), max(w, window)
    padded = F.pad(image, (0, pw - w, 0, ph - h))
    stride = max(1, int(window * (1 - overlap)))
    logits = counts = None
    for y in _window_starts(ph, window, stride):
        for x in _window_starts(pw, window, stride):
            out = model(padded[..., y : y + window, x : x + window])
            if logits is None:
                logits = out.new_zeros(out.shape[0], out.shape[1], ph, pw)
                counts = out.new_zeros(1, 1, ph, pw)
            logits[..., y : y + window, x : x + window] += out
            counts[..., y : y + window, x : x + window] += 1
    return (logits / counts)[..., :h, :w]


def scaled_size(size: int, scale: float) -> int:
    """The official ``scale_dimension``: ``int((size - 1) * scale + 1)``, the size whose corner pixels stay on
    the original's corners when resizing with ``align_corners=True`` (513 at 0.5 -> 257, at 1.75 -> 897).

    Computed in integers with the scale as the exact fraction its float holds, so that a traced ``size``
    (``segkit export --end_to_end``, dynamic height and width) stays one integer expression; for the scales
    the papers use (multiples of 1/4) it equals the official float arithmetic exactly.
    """
    if scale <= 0:
        raise ValueError(f"scales must be positive, got {scale}")
    ratio = Fraction(scale)
    return (size - 1) * ratio.numerator // ratio.denominator + 1


def _scale_logits(
    model: nn.Module, image: torch.Tensor, scale: float, window: int | None, overlap: float
) -> torch.Tensor:
    """Logits of ``image`` (B, 3, H, W) at input scale ``scale``, resized back to (H, W).

    As the official ``multi_scale_logits``: the image resized to the official ``scale_dimension`` sizes, the
    model's stride-4 logits resized to the stride-4 size of max(1, scale) x the image, then to the image
    (every resize bilinear with ``align_corners=True``). With a sliding window, each window's logits come
    upsampled to the window and the scaled image's logits are resized to (H, W).
    """
    h, w = image.shape[-2:]
    size = (scaled_size(h, scale), scaled_size(w, scale))
    scaled = image if scale == 1 else resize(image, size)
    if window is not None and (size[0] > window or size[1] > window):
        return resize(sliding_logits(model, scaled, window, overlap), (h, w))
    logits = model(scaled, upsample=False)  # (B, K, ceil(h * scale / 4), ceil(w * scale / 4))
    big = max(1.0, scale) / 4
    return resize(resize(logits, (scaled_size(h, big), scaled_size(w, big))), (h, w))


def class_probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """The model's class probabilities from its logits (:meth:`~segkit.head.Head.probabilities`): one softmax
    over the classes, one sigmoid per class of a multi-label model, ``(1 - p, p)`` for a binary model."""
    return Head.of(model).probabilities(logits)


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int | None = None,
    overlap: float = 1 / 3,
    pad_to: Sequence[int] | None = None,
) -> torch.Tensor:
    """Class probabilities (B, K, H, W), averaged over ``scales`` and (with ``flip``) left-right flips (one sigmoid
    per class for a multi-label model, :func:`class_probabilities`).

    ``model`` is a :class:`~segkit.models.DeepLabV3Plus` (its ``upsample=False`` logits are resized as the
    official evaluation resizes them). ``pad_to=(H, W)``: the official evaluation's ``eval_crop_size``: the
    image is first padded at the bottom and right with zeros (the normalized mean pixel, as the official
    ``pad_to_bounding_box`` with the mean) to at least that size; scales and flips then apply to the padded
    image, and the result is cropped back.
    """
    h, w = image.shape[-2:]
    image = _pad(image, pad_to)
    total = None
    passes = 0
    for scale in scales:
        for flipped in (False, True) if flip else (False,):
            if flipped:
                logits = _scale_logits(model, image.flip(-1), scale, window, overlap).flip(-1)
            else:
                logits = _scale_logits(model, image, scale, window, overlap)
            probs = class_probabilities(model, logits)
            total = probs if total is None else total.add_(probs)
            passes += 1
            del logits, probs
    return total.div_(passes)[..., :h, :w]


def _pad(image: torch.Tensor, pad_to: Sequence[int] | None) -> torch.Tensor:
    """Zeros (the normalized mean pixel) at the bottom and right up to ``pad_to`` (H, W), if it is larger."""
    if pad_to is None:
        return image
    h, w = image.shape[-2:]
    return F.pad(image, (0, max(w, pad_to[1]) - w, 0, max(h, pad_to[0]) - h))


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, pad_to: Sequence[int] | None = None) -> torch.Tensor:
    """Logits (B, K, H, W) of one pass at scale 1 without flip, resized (and padded) as :func:`predict_probs`
    resizes its passes: their softmax is ``predict_probs(model, image, pad_to=pad_to)``."""
    h, w = image.shape[-2:]
    return _scale_logits(model, _pad(image, pad_to), 1.0, None, 1 / 3)[..., :h, :w]


def predict_labels(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int | None = None,
    overlap: float = 1 / 3,
    pad_to: Sequence[int] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> list[torch.Tensor]:
    """:func:`predict_probs` followed by the model's decision (:func:`label_maps`): one uint8 class-index map per
    image (a multi-label model's (K, H, W) booleans)."""
    return label_maps(Head.of(model), predict_probs(model, image, scales, flip, window, overlap, pad_to), sizes)
