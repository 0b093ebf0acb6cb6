"""One-call inference in Python: a checkpoint or an exported file, images in, label maps out.

    from segkit import Segmenter
    labels = Segmenter("deeplab.onnx")("photo.jpg")   # (H, W) uint8 class indices

A checkpoint runs as ``segkit predict`` runs it (the same reading, normalization and
:func:`~segkit.inference.predict_labels`, so the label maps are equal); an exported file runs as ``segkit eval
--model_file`` runs it (:class:`~segkit.inference.exported.ExportedModel`), with the settings baked into it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.bands import ImageFormat
from ..data.base import as_rgb, read_image
from ..data.transforms import eval_transform
from ..io.torch_files import read_checkpoint
from .exported import ExportedModel
from .predict import checkpoint_model, predict_labels
from .settings import InferenceSettings

__all__ = ["Segmenter"]


def is_exported(path: Path) -> bool:
    """An ONNX file, or a TorchScript archive with segkit's metadata (a checkpoint is a zip archive too)."""
    if not zipfile.is_zipfile(path):
        return path.suffix.lower() == ".onnx"
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/extra/segkit.json") for n in archive.namelist())


def _plain(value):
    """Settings compared as JSON holds them: sequences as lists of floats."""
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return value


class Segmenter:
    """Segments images with a segkit checkpoint (``segkit fit``/``convert``) or a file of ``segkit export``.

    Args:
        model: the checkpoint or exported file.
        device: "cpu", "cuda", ... (ONNX files: ONNX Runtime's CUDA provider when asked for and installed).
        scales, flip, pad_to, window, overlap, output_stride: test-time settings as ``segkit predict`` takes
            them (checkpoints only: an exported file has its settings baked in and refuses others).
        batch_size: images of one size run together.

    ``class_names``, ``palette`` (K, 3), ``mean``, ``std`` and ``settings`` say what the model was trained on
    and how it runs.
    """

    def __init__(
        self,
        model: str | Path,
        device: str = "cpu",
        *,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        pad_to: Sequence[int] | None = None,
        window: int | None = None,
        overlap: float = 1 / 3,
        output_stride: int | None = None,
        batch_size: int = 4,
    ) -> None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.path, self.device, self.batch_size = path, device, batch_size
        asked = {"scales": scales, "flip": flip, "pad_to": pad_to, "window": window, "output_stride": output_stride}
        if is_exported(path):
            self.exported = ExportedModel(path, device)
            record = self.exported.meta
            self.format = ImageFormat.from_record(record)  # RGB for a file that records no bands
            self.thresholds = None  # a multi-label file decides in its graph (ExportedModel.labels)
            baked = self.exported.settings
            differ = [k for k, v in asked.items() if v is not None and _plain(v) != _plain(baked.get(k))]
            if differ:
                raise ValueError(
                    f"{path} has its test-time settings baked in ({', '.join(f'{k} {baked.get(k)}' for k in differ)});"
                    " export it again with the settings you want, or give the checkpoint"
                )
            self.settings = InferenceSettings.of(baked)
        else:
            checkpoint = read_checkpoint(path)
            record = checkpoint.get("segkit_data")
            if record is None:
                raise ValueError(
                    f"{path} does not record its data set's normalization and classes (a checkpoint of an earlier "
                    "segkit): run it with segkit predict --config, or export it with segkit export --config"
                )
            self.exported = None
            self.model = checkpoint_model(checkpoint, path, None, output_stride).to(device).eval()
            self.thresholds = self.model.thresholds if self.model.multilabel else None
            self.format = ImageFormat.from_record(record)
            self.transform = eval_transform(self.format.mean, self.format.std, self.format.pixel_max)
            self.settings = InferenceSettings(tuple(scales or [1.0]), bool(flip), window, overlap, pad_to)
        self.class_names = list(record["class_names"])
        self.palette = np.asarray(record["palette"], np.uint8)
        self.mean, self.std = tuple(record["mean"]), tuple(record["std"])

    def __call__(self, images):
        """Label map(s) of one image or a list of them: a file path, a PIL image or a uint8/uint16 array (grey,
        RGB or RGBA), of any size. One (H, W) uint8 array of class indices per image, at its own size; for a
        multi-label model one (K, H, W) boolean array, class k where its probability is above its threshold."""
        if isinstance(images, list | tuple):
            return self._segment([self._image(im, i) for i, im in enumerate(images)])
        return self._segment([self._image(images, 0)])[0]

    def _image(self, image, index: int) -> np.ndarray:
        """RGB uint8, or for a model of other bands the (H, W, C) array of its pixel type."""
        fmt = self.format
        if fmt is None or fmt.rgb:
            return read_image(Path(image)) if isinstance(image, str | Path) else as_rgb(image, f"image {index}")
        if isinstance(image, str | Path):
            return fmt.reader()(Path(image))
        array = np.asarray(image)
        array = array[..., None] if array.ndim == 2 else array
        dtype = np.uint16 if fmt.pixel_max == 65535 else np.uint8
        if array.ndim != 3 or array.shape[2] != fmt.in_channels or array.dtype != dtype:
            raise ValueError(
                f"image {index}: {array.dtype} of shape {array.shape}; the model reads (H, W, {fmt.in_channels}) "
                f"{np.dtype(dtype)} images"
            )
        return array

    def _segment(self, images: list[np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(images)
        order = sorted(range(len(images)), key=lambda i: images[i].shape)  # equal sizes become neighbours
        start = 0
        while start < len(order):
            end = start + 1
            while (
                end < len(order)
                and end - start < self.batch_size
                and images[order[end]].shape == images[order[start]].shape
            ):
                end += 1
            batch = [images[i] for i in order[start:end]]
            for i, labels in zip(order[start:end], self._labels(batch)):
                results[i] = labels
            start = end
        return results

    def _labels(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if self.exported is not None:
            labels = self.exported.labels(batch)
            return [m.astype(bool) for m in labels] if self.exported.multilabel else labels
        x = torch.stack([self.transform(image=im)["image"] for im in batch]).to(self.device)
        return [
            p.cpu().numpy() for p in predict_labels(self.model, x, **self.settings.options())
        ]  # multi-label: (K, H, W)
