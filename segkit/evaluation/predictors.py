"""What :func:`~segkit.evaluation.evaluate` scores: a checkpoint's model with its test-time settings, or a file of
``segkit export``; both take a (1, C, H, W) batch of one image and give the head's decision."""

from __future__ import annotations

import numpy as np
import torch

from ..head import Head
from ..inference import label_maps, predict_probs
from ..inference.memory import MemoryPlan, ModelFootprint
from ..inference.settings import InferenceSettings
from ..inference.tiled import tiled_labels


class CheckpointPredictor:
    """A checkpoint's model (eval mode, on the device) with its test-time ``settings`` on a (1, C, H, W) batch:
    raw pixels that ``transform`` (the eval transform) normalizes, or without one a batch already normalized.

    With a ``memory_budget`` (bytes), an image whose probabilities would need more is predicted band by band
    (:mod:`segkit.inference.tiled`, in the settings' window or 513 px windows)."""

    def __init__(
        self,
        model: torch.nn.Module,
        settings: InferenceSettings | None = None,
        *,
        memory_budget: int | None = None,
        transform=None,
    ) -> None:
        self.model, self.settings, self.transform = model.eval(), settings or InferenceSettings(), transform
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.plan = None
        if memory_budget is not None:
            self.plan = MemoryPlan(ModelFootprint.measure(self.model), self.settings, memory_budget)

    def _normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """A raw (1, 3, h, w) uint8 batch through ``transform`` (on the CPU, where the loader gives it); a batch
        already normalized as it is; either on the model's device."""
        if self.transform is None:
            return pixels.to(self.device)
        image = np.ascontiguousarray(pixels[0].permute(1, 2, 0).cpu().numpy())
        return self.transform(image=image)["image"][None].to(self.device)

    def predict(self, image: torch.Tensor, on_probs=None, name: str = "image", say=print) -> torch.Tensor:
        """(H, W) class indices; ``on_probs(y0, probs)`` sees the (K, rows, W) probabilities of the rows from
        ``y0`` (all rows at once, or band by band when the image is tiled)."""
        h, w = image.shape[-2:]
        if self.plan is None or not self.plan.tiled(h, w):
            probs = predict_probs(self.model, self._normalized(image), **self.settings.options())[0]
            if on_probs is not None:
                on_probs(0, probs)
            return label_maps(Head.of(self.model), probs[None])[0]
        refusal = self.plan.refusal(name, h, w)
        if refusal is not None:
            raise ValueError(refusal)
        say(self.plan.describe(name, h, w))
        hook = None if on_probs is None else (lambda y0, rows, probs: on_probs(y0, probs))
        read = lambda y0, y1, x0, x1: self._normalized(image[..., y0:y1, x0:x1])  # noqa: E731
        return tiled_labels(self.model, read, h, w, **self.plan.tile_options, on_rows=hook)


class ExportedPredictor:
    """An :class:`~segkit.inference.exported.ExportedModel` on a batch of one raw (1, 3, H, W) uint8 image."""

    def __init__(self, exported) -> None:
        self.exported = exported

    def predict(self, image: torch.Tensor, on_probs=None, name: str = "image", say=print) -> torch.Tensor:
        """(H, W) class indices; ``on_probs(0, probs)`` sees the (K, H, W) probabilities when given."""
        if on_probs is None:
            return self.labels(image)
        probs = self.probs(image)
        on_probs(0, probs)
        return label_maps(self.exported.head, probs[None])[0]

    def labels(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.exported.labels([_pixels(image)])[0]).to(image.device)

    def probs(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.exported.probs([_pixels(image)])[0]).to(image.device)


def _pixels(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).cpu().numpy()
