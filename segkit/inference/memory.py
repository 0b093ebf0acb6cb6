"""How much host memory predicting one image takes, whole or tiled, and the budget it must fit in.

The estimates are per pixel of the image, from the terms that grow with it: the decoded 8-bit image, its
normalized float copy, the class scores ((K, H, W) float32: logits, probabilities and their running sum) and
the model's activations, which :func:`activation_bytes_per_pixel` measures once on a small probe input. The
tiled path (:mod:`.tiled`) keeps of the image's size only the 8-bit image and the label map (and the
confidence maps when asked for), plus a band of class scores one window high and the image wide.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..io.disk import human
from .settings import InferenceSettings

# The probe counts the tensors that modules take and give; functional ops between them and the kernels'
# own buffers are not seen. Measured peak resident memory of a forward pass was 1.25-1.34x the probe's count
# (Xception-65 and the tiny test encoder, 1024^2 and 2048^2 inputs, this repository's 2-core CPU machine).
ACTIVATION_SAFETY = 1.5

# the tile side of the tiled path when --window is not given: the crop size of the VOC configs
DEFAULT_TILE = 513

# OpenCV's own decoding limit (CV_IO_MAX_IMAGE_PIXELS), 32768 x 32768: a header above it is refused unread
MAX_PIXELS = 2**30

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20}
_UNITS |= {"gib": 2**30, "tib": 2**40}


def parse_size(text: str | int) -> int:
    """``"4GB"``, ``"512 MiB"``, ``"1.5e9"`` or an int -> bytes (GB = 10^9, GiB = 2^30)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match and match.group(2).lower()
        if not match or unit not in _UNITS:
            raise ValueError(f"{text!r} is not a size: give bytes or a number with KB, MB, GB (or KiB, MiB, GiB)")
        value = float(match.group(1)) * _UNITS[unit]
    if not value > 0:
        raise ValueError(f"{text!r}: the size must be positive")
    return int(value)


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_budget(device: str | torch.device = "cpu") -> int:
    """Half of the memory available now (4 GB when the system does not say); on a GPU, the smaller of that
    and half of the GPU's free memory, where the class scores are."""
    available = available_memory()
    budget = available // 2 if available else 4 * 10**9
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        budget = min(budget, torch.cuda.mem_get_info(device)[0] // 2)
    return budget


@torch.no_grad()
def activation_bytes_per_pixel(model: nn.Module, channels: int = 3, size: int = 128) -> tuple[float, int]:
    """Peak bytes per input pixel of the tensors alive during one forward pass of ``model`` (no gradients), and
    the number of classes it predicts.

    Measured on a ``size`` x ``size`` probe: every leaf module's inputs and outputs are tracked with weak
    references, and before and after each module the bytes of those still alive are summed; the largest sum,
    times :data:`ACTIVATION_SAFETY`, divided by the probe's pixels. Activations grow with the pixels, so this
    scales to any input size.
    """
    alive: dict[int, tuple[weakref.ref, int]] = {}
    peak = 0

    def track(tensors) -> None:
        nonlocal peak
        for t in tensors if isinstance(tensors, (tuple, list)) else (tensors,):
            if isinstance(t, torch.Tensor) and id(t) not in alive:
                alive[id(t)] = (weakref.ref(t), t.untyped_storage().nbytes())
        total = 0
        for key, (ref, nbytes) in list(alive.items()):
            if ref() is None:
                del alive[key]
            else:
                total += nbytes
        peak = max(peak, total)

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_pre_hook(lambda m, i: track(i)) for m in leaves]
    hooks += [m.register_forward_hook(lambda m, i, o: track(o)) for m in leaves]
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        logits = model(torch.zeros(1, channels, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return ACTIVATION_SAFETY * peak / size**2, logits.shape[1]


@dataclass(frozen=True)
class ModelFootprint:
    """A model's memory per pixel and classes, for the estimates of predicting an image whole or tiled."""

    activation: float  # bytes per input pixel of one forward pass
    num_classes: int

    @classmethod
    def measure(cls, model: nn.Module, channels: int | None = None) -> ModelFootprint:
        """``channels``: the model's input bands (default its ``in_channels``, or 3)."""
        return cls(*activation_bytes_per_pixel(model, channels or getattr(model, "in_channels", 3)))

    def whole_image_bytes(
        self,
        height: int,
        width: int,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        window: int | None = None,
    ) -> int:
        """Peak bytes of predicting one (height, width) image in memory (:func:`~segkit.inference.predict_probs`).

        The 8-bit image, its normalized float copy and the batch stacked from it (3 + 12 + 12 bytes per pixel,
        and a flipped copy), the running sum of probabilities, one pass's logits and probabilities (3 x 4K), the
        largest scale's input and model activations, or with ``window`` the window's activations and the
        (K, H, W) logits sum of the windows.
        """
        pixels, k = height * width, self.num_classes
        s2 = max(scales) ** 2
        per_pixel = 27 + 12 * flip + 12 * k + 12 * s2
        if window is None or (height * s2**0.5 <= window and width * s2**0.5 <= window):
            return int(pixels * (per_pixel + self.activation * s2))
        per_pixel += (4 * k + 4) * s2  # the windows' logit sum and counts at the scaled size
        return int(pixels * per_pixel + self.activation * window**2)

    def tiled_bytes(
        self,
        height: int,
        width: int,
        window: int,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        confidence: bool = False,
        full_size: bool = True,
    ) -> int:
        """Peak bytes of the tiled path (:func:`~segkit.inference.tiled.tiled_probs`) for one image.

        Full size (without ``full_size``: none, a raster read and written window by window,
        :mod:`~segkit.inference.rasters`): the 8-bit image (3 bytes per pixel), the label map (1) and with
        ``confidence`` two 16-bit maps (4), plus a copy of the largest of them while its file is encoded (3). Per
        band: the class-score sum and
        counts of one window's height across the image ((4K + 4) x window x width), and the final rows, handed
        on 64 MiB at a time (or the band's), with what is computed from them (4 x that). Per tile: one window
        through the model at the largest scale with its flip, and its probabilities.
        """
        k = self.num_classes
        full = (3 + 1 + 4 * confidence + 3) * height * width if full_size else 0
        rows = (4 * k + 4) * window * max(width, window)
        band = rows + 4 * min(2**26, rows)
        s2 = max(scales) ** 2
        tile = window**2 * (self.activation * s2 + 12 * (1 + flip) * s2 + 12 * k * max(1.0, s2))
        return int(full + band + tile)


class MemoryPlan:
    """Which images are predicted whole and which band by band (:mod:`.tiled`), for a model's ``footprint``,
    its test-time ``settings`` and a memory ``budget`` in bytes; which are refused (``max_pixels``, or too large
    even tiled)."""

    def __init__(
        self,
        footprint: ModelFootprint,
        settings: InferenceSettings,
        budget: int,
        *,
        confidence: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.footprint = footprint
        self.settings, self.budget, self.confidence, self.max_pixels = settings, budget, confidence, max_pixels
        self.window = settings.window or DEFAULT_TILE

    @property
    def tile_options(self) -> dict:
        """The keyword arguments of :func:`~segkit.inference.tiled.tiled_probs` for a tiled image: the window,
        the overlap and the test-time augmentation of ``settings``."""
        return self.settings.tile_options(self.window)

    def refusal(self, name, height: int, width: int, raster: bool = False) -> str | None:
        """Why the image cannot be predicted within the limits (one line), or None. A ``raster`` is read window by
        window (:mod:`~segkit.inference.rasters`): it has no decoding limit, and no full-size arrays when tiled."""
        if height * width > self.max_pixels and not raster:
            return (
                f"{name}: its header says {human_pixels(height, width)}, above the limit of {self.max_pixels} "
                "pixels (--max_pixels); raise it if the image is real"
            )
        if self.tiled(height, width) and self._tiled_bytes(height, width, raster) > self.budget:
            return (
                f"{name}: {human_pixels(height, width)} needs about {human(self._tiled_bytes(height, width, raster))} "
                f"even tiled, above the memory budget of {human(self.budget)}; raise --memory_budget or "
                "lower --window"
            )
        return None

    def admit(self, files: list, sizes: list[tuple[int, int]]) -> tuple[list[int], list[tuple[object, str]]]:
        """The positions of the files to predict, smallest first (equal sizes become neighbours), and the
        (file, reason) of those refused."""
        order, refused = [], []
        for i in sorted(range(len(files)), key=lambda i: sizes[i]):
            reason = self.refusal(files[i], *sizes[i])
            if reason is None:
                order.append(i)
            else:
                refused.append((files[i], reason))
        return order, refused

    def tiled(self, height: int, width: int) -> bool:
        """Whether predicting the image whole would exceed the budget."""
        return self._whole_bytes(height, width) > self.budget

    def describe(self, name: str, height: int, width: int, raster: bool = False) -> str:
        """The one line that says an image is tiled, and what it takes."""
        return (
            f"{name}: {human_pixels(height, width)} would need about {human(self._whole_bytes(height, width))} "
            "whole, above the "
            f"{human(self.budget)} memory budget: predicted in {self.window} px windows, band by band "
            f"(about {human(self._tiled_bytes(height, width, raster))})"
        )

    def _whole_bytes(self, height: int, width: int) -> int:
        s = self.settings
        return self.footprint.whole_image_bytes(height, width, s.scales, s.flip, s.window)

    def _tiled_bytes(self, height: int, width: int, raster: bool = False) -> int:
        s = self.settings
        return self.footprint.tiled_bytes(
            height, width, self.window, s.scales, s.flip, self.confidence, full_size=not raster
        )


def human_pixels(height: int, width: int) -> str:
    """``"20000 x 20000 (400 Mpx)"``."""
    pixels = height * width
    exponent = min(int(math.log10(max(pixels, 1)) // 3), 3)
    unit = ("px", "kpx", "Mpx", "Gpx")[exponent]
    return f"{width} x {height} ({pixels / 1000**exponent:.3g} {unit})"
