"""Inference as the DeepLab papers evaluate: multi-scale inputs, left-right flips and sliding windows.

Following the official ``predict_labels_multi_scale``, each scale (and its flipped copy) is run separately,
its logits are resized back to the input size and turned into class probabilities, and the probabilities are
averaged. They are added to one running sum one scale and flip at a time, so peak memory stays that of the
largest single pass plus one (B, K, H, W) buffer. Images larger than ``window`` are cut into overlapping
windows whose logits are averaged where they overlap.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models.decoder import resize


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
            out = model(padded[..., y:y + window, x:x + window])
            if logits is None:
                logits = out.new_zeros(out.shape[0], out.shape[1], ph, pw)
                counts = out.new_zeros(1, 1, ph, pw)
            logits[..., y:y + window, x:x + window] += out
            counts[..., y:y + window, x:x + window] += 1
    return (logits / counts)[..., :h, :w]


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int | None = None,
    overlap: float = 1 / 3,
) -> torch.Tensor:
    """Class probabilities (B, K, H, W), averaged over ``scales`` and (with ``flip``) left-right flips."""
    h, w = image.shape[-2:]
    total = None
    passes = 0
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))  # official: bilinear, align_corners=True
        scaled = image if size == (h, w) else resize(image, size)
        for flipped in ((False, True) if flip else (False,)):
            inp = scaled.flip(-1) if flipped else scaled
            logits = sliding_logits(model, inp, window, overlap)
            if flipped:
                logits = logits.flip(-1)
            probs = resize(logits, (h, w)).softmax(dim=1)
            total = probs if total is None else total.add_(probs)
            passes += 1
            del logits, probs
    return total.div_(passes)
