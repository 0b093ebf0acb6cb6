"""Running a file that ``segkit export`` wrote (ONNX, INT8 ONNX or TorchScript) as segkit runs a checkpoint:
images in (uint8 RGB, or the model's bands as uint8 or uint16, as its metadata says), class-index maps out
(a multi-label model's: one 0/1 mask per class), with the settings baked into the file.

An end-to-end file takes the images as they are. A logits file takes them normalized with the mean and std its
metadata records (``(pixel / max - mean) / std`` in float32, as the evaluation transform computes it), and
its logits are decided as the checkpoint's head decides them (:class:`~segkit.head.Head`: the argmax, a binary
model's sigmoid above its threshold, a multi-label model's sigmoid of each class above the class's); it runs
one scale without flip, the only settings it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..head import Head
from ..io.exported_metadata import ModelFileError, is_onnx_file, read_metadata, write_metadata

__all__ = ["ExportedModel", "ModelFileError", "read_metadata", "write_metadata"]


class ExportedModel:
    """An exported model file, loaded for inference on ``device`` ("cpu" or "cuda")."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        self.form = self.meta["form"]
        self.num_classes = self.meta["num_classes"]
        # files that record none of these (written before segkit read other bands) are 8-bit RGB, single-label
        self.in_channels, self.pixel_max = int(self.meta.get("in_channels", 3)), int(self.meta.get("pixel_max", 255))
        self.pixel_dtype = np.uint8 if self.pixel_max == 255 else np.uint16
        self.multilabel = bool(self.meta.get("multilabel", False))
        self.thresholds = self.meta.get("thresholds")
        # a file that records no head is multi-label or softmax (or a binary model whose threshold its graph holds)
        self.head = Head(
            self.meta.get("head") or ("multilabel" if self.multilabel else "multiclass"),
            self.num_classes,
            self.thresholds if self.multilabel or self.meta.get("head") == "binary" else None,
        )
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
        """One (H, W) class-index map per image (H, W, C) (a multi-label model's: (K, H, W) uint8 masks, 1 where
        the class's probability is above its threshold); images of one size run as one batch when the file
        takes batches."""
        images = [self._checked(im) for im in images]
        if not images:
            return []
        same = all(im.shape == images[0].shape for im in images)
        if self.batched and same:
            return list(self._batch_labels(np.stack(images)))
        return [self._batch_labels(im[None])[0] for im in images]

    def _batch_labels(self, batch: np.ndarray) -> np.ndarray:
        if self.form == "logits":
            x = np.ascontiguousarray(self._normalized(batch))
            return self._decide(self._run(x)["logits"], logits=True)
        out = self._run(batch if self.batched else batch[0])
        if "labels" in out:
            labels = out["labels"]
        else:  # probabilities or logits only: the decision on them
            labels = self._decide(out["probs"], logits=False) if "probs" in out else self._decide(out["logits"], True)
        return labels if self.batched else labels[None]

    def _decide(self, scores: np.ndarray, logits: bool) -> np.ndarray:
        """(N, K, H, W) scores -> the head's decisions (:meth:`~segkit.head.Head.decide`): class indices
        (N, H, W), or a multi-label model's (N, K, H, W) uint8 masks."""
        scores = torch.from_numpy(np.ascontiguousarray(scores))
        decided = self.head.decide_logits(scores) if logits else self.head.decide(scores)
        return decided.numpy().astype(np.uint8 if self.multilabel else _labels_dtype(self.num_classes))

    def probs(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (K, H, W) float32 map of class probabilities per image (H, W, C): the file's ``probs`` output, or
        the softmax of its logits (a multi-label model's: their sigmoid); a file that outputs labels alone has
        none."""
        if self.form != "logits" and not {"probs", "logits"} & set(self.output_names):
            raise ModelFileError(
                f"{self.path} outputs {', '.join(self.output_names)} but no class probabilities: export it with "
                "--outputs labels probs"
            )
        return [self._probs(self._checked(im)[None])[0] for im in images]

    def _probs(self, batch: np.ndarray) -> np.ndarray:
        if self.form == "logits":
            out = {"logits": self._run(np.ascontiguousarray(self._normalized(batch)))["logits"]}
        else:
            out = self._run(batch if self.batched else batch[0])
            out = {k: (v if self.batched else v[None]) for k, v in out.items()}
        if "probs" in out:
            return out["probs"]
        return self.head.probabilities(torch.from_numpy(np.ascontiguousarray(out["logits"]))).numpy()

    def _normalized(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, C) pixels -> (N, C, H, W) float32 normalized with the metadata's mean and std."""
        mean = np.asarray(self.meta["mean"], np.float32) * self.pixel_max
        std = np.asarray(self.meta["std"], np.float32) * self.pixel_max
        return ((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)

    def _checked(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        image = image[..., None] if image.ndim == 2 and self.in_channels == 1 else image
        if image.dtype != self.pixel_dtype or image.ndim != 3 or image.shape[2] != self.in_channels:
            what = "uint8 RGB images" if self.in_channels == 3 and self.pixel_max == 255 else "images"
            raise ValueError(
                f"{self.path} takes {what} (H, W, {self.in_channels}) of {np.dtype(self.pixel_dtype)}, "
                f"got {image.dtype} {image.shape}"
            )
        return np.ascontiguousarray(image)


def _labels_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int64
