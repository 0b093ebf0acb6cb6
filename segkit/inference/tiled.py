"""Predicting an image larger than memory allows, one band of rows at a time.

The image is cut into the same overlapping windows as :func:`~segkit.inference.sliding_logits` cuts it (same
starts, the last window ending at the border, zeros where the image is smaller than a window), visited row of
windows by row of windows. Their scores are summed in a band one window high and the image wide; when a row of
windows is done, the rows above the next row's start are final: they are averaged, handed to the caller and
dropped, and the rest of the band moves up. Neither the image's logits nor its probabilities are ever held
whole: the memory is that of the band and of one window.

With one pass (scale 1, no flip) the windows' logits are averaged and then turned into probabilities, exactly
as the in-memory sliding window does (equal results, tests/inference/test_tiled.py). With several scales or flips, the
test-time augmentation runs on each window (:func:`~segkit.inference.predict_probs` of the window) and the
windows' probabilities are averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..head import Head
from .predict import _window_starts, class_probabilities, predict_probs

# read(y0, y1, x0, x1): the normalized (1, C, y1 - y0, x1 - x0) region of the image, on the model's device
RegionReader = Callable[[int, int, int, int], torch.Tensor]


@torch.no_grad()
def tiled_probs(
    model: nn.Module,
    read: RegionReader,
    height: int,
    width: int,
    *,
    window: int,
    overlap: float = 1 / 3,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    chunk_bytes: int = 2**26,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yields ``(y0, probs)``, ``probs`` (K, rows, width) the class probabilities of the image's rows from
    ``y0``, from the top until every row was given once; each ``probs`` takes about ``chunk_bytes`` (64 MiB) or
    less, so that what the caller computes from it stays small next to the band."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    one_pass = list(scales) == [1.0] and not flip
    ph, pw = max(height, window), max(width, window)
    stride = max(1, int(window * (1 - overlap)))
    rows, columns = _window_starts(ph, window, stride), _window_starts(pw, window, stride)
    band = counts = None
    for i, y in enumerate(rows):
        for x in columns:
            tile = read(y, min(y + window, height), x, min(x + window, width))
            tile = F.pad(tile, (0, window - tile.shape[-1], 0, window - tile.shape[-2]))
            scores = model(tile) if one_pass else predict_probs(model, tile, scales, flip)
            if band is None:
                band = scores.new_zeros(1, scores.shape[1], window, pw)
                counts = scores.new_zeros(1, 1, window, pw)
            band[..., x : x + window] += scores
            counts[..., x : x + window] += 1
        done = rows[i + 1] - y if i + 1 < len(rows) else window  # rows no later window touches
        step = max(1, chunk_bytes // (4 * band.shape[1] * width))  # final rows handed on a few at a time
        for r in range(0, min(done, height - y), step):
            r1 = min(r + step, done, height - y)
            mean = band[..., r:r1, :width] / counts[..., r:r1, :width]
            yield y + r, (class_probabilities(model, mean) if one_pass else mean)[0]
        keep = window - done
        band[..., :keep, :] = band[..., done:, :].clone()
        band[..., keep:, :] = 0
        counts[..., :keep, :] = counts[..., done:, :].clone()
        counts[..., keep:, :] = 0


def tiled_labels(
    model: nn.Module,
    read: RegionReader,
    height: int,
    width: int,
    *,
    window: int,
    overlap: float = 1 / 3,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    on_rows: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """The model's decision (:meth:`~segkit.head.Head.decide`; on the CPU) of :func:`tiled_probs`: the (H, W)
    class-index map, or a multi-label model's (K, H, W) booleans, the one full-size array it fills.
    ``on_rows(y0, labels, probs)`` sees each final band, its (rows, W) labels (multi-label: (K, rows, W)) and
    (K, rows, W) probabilities, before the next band is computed."""
    head = Head.of(model)
    labels = None
    for y0, probs in tiled_probs(model, read, height, width, window=window, overlap=overlap, scales=scales, flip=flip):
        rows = head.decide(probs[None])[0].cpu()
        if labels is None:
            labels = torch.empty((*rows.shape[:-2], height, width), dtype=rows.dtype)
        labels[..., y0 : y0 + rows.shape[-2], :] = rows
        if on_rows is not None:
            on_rows(y0, rows, probs)
    return labels
