"""The test-time settings of inference as one typed value: what ``segkit eval``, ``predict`` (images, tiles,
video), ``export --verify`` and :class:`~segkit.inference.segmenter.Segmenter` run a checkpoint's model with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InferenceSettings:
    """Input ``scales`` (each a pass of the image resized by it) and left-right ``flip`` passes, whose
    probabilities are averaged; a sliding ``window`` of that side (pixels) with ``overlap`` (a fraction of it)
    for inputs larger than it; ``pad_to`` (height, width): the official evaluation's padding of each image
    (bottom and right, the mean pixel) before the passes. :func:`~segkit.inference.predict_probs` takes them as
    keyword arguments (:meth:`options`)."""

    scales: tuple[float, ...] = field(default=(1.0,))
    flip: bool = False
    window: int | None = None
    overlap: float = 1 / 3
    pad_to: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive numbers, got {list(self.scales)}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be at least 1 pixel, got {self.window}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        pad_to = None if self.pad_to is None else tuple(int(v) for v in self.pad_to)
        if pad_to is not None and (len(pad_to) != 2 or min(pad_to) < 1):
            raise ValueError(f"pad_to must be a positive height and width, got {list(self.pad_to)}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "pad_to", pad_to)

    @classmethod
    def of(cls, values: Mapping | None) -> InferenceSettings:
        """From a mapping with some of the fields (a config's or an exported file's record; other keys such as
        ``output_stride`` are not test-time passes and are left out)."""
        values = values or {}
        return cls(**{k: values[k] for k in ("scales", "flip", "window", "overlap", "pad_to") if k in values})

    def options(self) -> dict:
        """The keyword arguments of :func:`~segkit.inference.predict_probs` and
        :func:`~segkit.inference.predict_labels`."""
        return {
            "scales": list(self.scales),
            "flip": self.flip,
            "window": self.window,
            "overlap": self.overlap,
            "pad_to": self.pad_to,
        }

    def tile_options(self, window: int) -> dict:
        """The keyword arguments of :func:`~segkit.inference.tiled.tiled_probs` in ``window`` px windows (the
        padding has no place there: a tiled image is the whole canvas)."""
        return {"window": window, "overlap": self.overlap, "scales": list(self.scales), "flip": self.flip}
