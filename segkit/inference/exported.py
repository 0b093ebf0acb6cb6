"""Running a file that ``segkit export`` wrote (ONNX, INT8 ONNX or TorchScript) as segkit runs a checkpoint:
uint8 RGB images in, class-index maps out, with the settings baked into the file.

An end-to-end file takes the images as they are. A logits file takes them normalized with the mean and std its
metadata records (``(pixel / 255 - mean) / std`` in float32, as the evaluation transform computes it), and
its logits' argmax is the label map; it runs one scale without flip, the only settings it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..export.metadata import ModelFileError, is_onnx_file, read_metadata, write_metadata

__all__ = ["ExportedModel", "ModelFileError", "read_metadata", "write_metadata"]


class ExportedModel:
    """An exported model file, loaded for inference on ``device`` ("cpu" or "cuda")."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        self.form = self.meta["form"]
        self.num_classes = self.meta["num_classes"]
        self.is_onnx = is_onnx_file(self.path)
        self.batched = self.form == "logits" or self.meta["inputs"][0]["shape"][0] == "batch"
        self.device = device
        if self.is_onnx:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            providers = ["CPUExecutionProvider"]
            if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            try:
                self.session = ort.InferenceSession(str(self.path), options, providers=providers)
            except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own kinds
                raise ModelFileError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0][:200]}") from None
            self.output_names = [o.name for o in self.session.get_outputs()]
        else:
            self.module = torch.jit.load(str(self.path), map_location=device).eval()
            self.output_names = [o["name"] for o in self.meta["outputs"]]

    @property
    def settings(self) -> dict:
        """The test-time settings baked into the file (scales, flip, pad_to, output_stride)."""
        return dict(self.meta["settings"])

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.is_onnx:
            return dict(zip(self.output_names, self.session.run(None, {"image": x})))
        with torch.no_grad():
            out = self.module(torch.from_numpy(x).to(self.device))
        out = out if isinstance(out, tuple | list) else (out,)
        return {name: o.cpu().numpy() for name, o in zip(self.output_names, out)}

    def labels(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (H, W) class-index map per uint8 RGB image (H, W, 3); images of one size run as one batch when
        the file takes batches."""
        images = [_checked(im, self.path) for im in images]
        if not images:
            return []
        same = all(im.shape == images[0].shape for im in images)
        if self.batched and same:
            return list(self._batch_labels(np.stack(images)))
        return [self._batch_labels(im[None])[0] for im in images]

    def _batch_labels(self, batch: np.ndarray) -> np.ndarray:
        if self.form == "logits":
            x = np.ascontiguousarray(self._normalized(batch))
            return self._run(x)["logits"].argmax(1).astype(_labels_dtype(self.num_classes))
        out = self._run(batch if self.batched else batch[0])
        if "labels" in out:
            labels = out["labels"]
        else:  # probabilities or logits only: their argmax over the classes
            scores = out.get("probs", out.get("logits"))
            labels = scores.argmax(-3).astype(_labels_dtype(self.num_classes))
        return labels if self.batched else labels[None]

    def probs(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (K, H, W) float32 map of class probabilities per uint8 RGB image (H, W, 3): the file's
        ``probs`` output, or the softmax of its logits; a file that outputs labels alone has none."""
        if self.form != "logits" and not {"probs", "logits"} & set(self.output_names):
            raise ModelFileError(
                f"{self.path} outputs {', '.join(self.output_names)} but no class probabilities: export it with "
                "--outputs labels probs"
            )
        return [self._probs(_checked(im, self.path)[None])[0] for im in images]

    def _probs(self, batch: np.ndarray) -> np.ndarray:
        if self.form == "logits":
            out = {"logits": self._run(np.ascontiguousarray(self._normalized(batch)))["logits"]}
        else:
            out = self._run(batch if self.batched else batch[0])
            out = {k: (v if self.batched else v[None]) for k, v in out.items()}
        if "probs" in out:
            return out["probs"]
        logits = out["logits"]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def _normalized(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalized with the metadata's mean and std."""
        mean = np.asarray(self.meta["mean"], np.float32) * 255
        std = np.asarray(self.meta["std"], np.float32) * 255
        return ((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)


def _labels_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int64


def _checked(image: np.ndarray, path: Path) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path} takes uint8 RGB images (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)
