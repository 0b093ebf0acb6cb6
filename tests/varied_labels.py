"""A classifier that must predict several classes on given images, by construction rather than by chance.

The model's decoder features ``f`` are projected on their direction of largest variance ``w`` (so that float
rounding is small against the spread of the projection): ``P = w . f``. Class ``c`` (0..M) gets the logit
``s * (c * P - (t_1 + ... + t_c))`` (less the same multiple of ``P`` for every class, to keep the logits small)
for thresholds ``t_1 < ... < t_M``; its increments ``s * (P - t_c)`` fall with ``c``, so the logits are concave
in ``c``, the class probabilities unimodal, and the most probable class is the number of thresholds below
``P``.

Inference averages class probabilities over scales and flips. A pixel whose every pass
puts ``P`` below a threshold ``t`` gets a class of at most the thresholds below ``t`` (each pass's distribution
falls beyond that class, so their mean does); one whose every pass puts ``P`` above ``t`` gets a larger class.
So a threshold chosen where the passes of an image agree splits it into two groups of disjoint classes; the
construction measures each group's share of the image on this machine's own floats, with a margin far above
the float noise between PyTorch, folded batch norm and ONNX Runtime, so both groups' classes are there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segkit.inference.predict import _scale_logits


def _feature_passes(model: nn.Module, image: torch.Tensor, scales, flip: bool) -> torch.Tensor:
    """(passes, C, H, W): the classifier's input features of every scale and flip, resized to the image as
    inference resizes logits (``model.decoder.classifier`` is the identity here)."""
    passes = []
    for scale in scales:
        for flipped in (False, True) if flip else (False,):
            x = image.flip(-1) if flipped else image
            f = _scale_logits(model, x, scale, None, 1 / 3)[0]
            passes.append(f.flip(-1) if flipped else f)
    return torch.stack(passes)


def _principal_direction(passes: Sequence[torch.Tensor]) -> torch.Tensor:
    """The unit direction of largest variance of the features of all passes' pixels."""
    f = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]) for p in passes]).double()
    return torch.linalg.svd(f - f.mean(0), full_matrices=False).Vh[0].float()


def _share(low: torch.Tensor, high: torch.Tensor, cut: float, margin: float) -> float:
    """The smaller of the shares of pixels whose every pass lies below ``cut`` and above it, ``margin`` away."""
    return min((high < cut - margin).float().mean().item(), (low > cut + margin).float().mean().item())


def _best_cut(low: torch.Tensor, high: torch.Tensor, margin: float) -> tuple[float, float]:
    """The threshold among quantiles of the passes' mean that maximizes :func:`_share`, and that share."""
    low, high = low.flatten(), high.flatten()
    step = max(1, low.numel() // 20000)
    grid = torch.quantile(((low + high) / 2)[::step], torch.linspace(0.02, 0.98, 49)).unique().tolist()
    cut = max(grid, key=lambda t: _share(low[::step], high[::step], t, margin))
    return cut, _share(low, high, cut, margin)


@torch.no_grad()
def set_varied_classifier(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    settings: Sequence[dict],
    scale: float = 20.0,
) -> list[list[float]]:
    """Sets ``model.decoder.classifier`` (a 1x1 convolution to K classes) so that on each of ``images``
    (normalized, (1, C, H, W)) and under each of ``settings`` (``scales``, ``flip``; ``images``, the indices of
    the images it applies to, all by default) the labels fall into two disjoint sets of classes. Returns, per
    setting, each image's smaller group share (of the image's pixels). ``scale``: the logit increment per
    threshold crossed, per standard deviation of ``P``."""
    classifier = model.decoder.classifier
    model.decoder.classifier = nn.Identity()
    passes = [
        [
            _feature_passes(model, image, s["scales"], s["flip"])
            for i, image in enumerate(images)
            if i in s.get("images", range(len(images)))
        ]
        for s in settings
    ]
    model.decoder.classifier = classifier
    direction = _principal_direction([f for per_setting in passes for f in per_setting])
    projections = [[torch.einsum("c,vchw->vhw", direction, f) for f in per_setting] for per_setting in passes]
    spread = torch.cat([p.flatten() for per_setting in projections for p in per_setting]).std().item()
    direction = direction / spread  # P in units of its standard deviation
    margin = 0.02  # of a standard deviation of P
    cuts, shares = [], []
    for per_setting in projections:
        shares.append([])
        for p in per_setting:
            cut, share = _best_cut(p.amin(0) / spread, p.amax(0) / spread, margin)
            cuts.append(cut)
            shares[-1].append(share)

    thresholds = sorted(cuts)
    k = classifier.out_channels
    if len(thresholds) > k - 1:
        raise ValueError(f"{len(thresholds)} thresholds need {len(thresholds) + 1} classes; the model has {k}")
    m = len(thresholds) + 1
    c = torch.arange(k, dtype=torch.float64) - m // 2
    offsets = torch.tensor([0.0, *thresholds], dtype=torch.float64).cumsum(0)
    offsets = offsets - offsets[m // 2]
    classifier.weight.zero_()
    classifier.bias.fill_(-1e4)  # classes beyond the thresholds' never win
    classifier.weight[:m] = (scale * c[:m].view(-1, 1) * direction.view(1, -1).double()).view(m, -1, 1, 1).float()
    classifier.bias[:m] = (-scale * offsets).float()
    return shares
