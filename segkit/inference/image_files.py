"""Segmenting files of images with a model: masks and overlays at each image's own resolution.

For every image ``<stem>.png`` (class indices, a palette PNG coloured like the data set's masks) and
``<stem>_overlay.jpg`` (the image blended with the colour mask) are written. Images of the same size are
batched together (sorted by size first), so each prediction equals that of the image alone; an image that
cannot be read is reported by name and skipped.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.base import read_image, write_label_png
from ..data.sampling import as_is
from ..data.visualize import save_overlay
from ..io.disk import written_whole
from .predict import label_maps, predict_probs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def find_images(spec: str) -> list[Path]:
    """The images of a folder (its image files, not recursive), a glob pattern (``**`` recurses) or one file."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        files = [path]
    elif glob.has_magic(spec):
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
    else:
        raise FileNotFoundError(f"--input {spec}: no such file or folder, and not a glob pattern")
    if not files:
        raise FileNotFoundError(f"--input {spec}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ValueError(
                f"{stems[f.stem]} and {f} would write the same output files ({f.stem}.png); "
                "predict them into different --output folders"
            )
        stems[f.stem] = f
    return files


def output_paths(folder: Path, image: Path, confidence: bool = False) -> tuple[Path, ...]:
    """The mask and the overlay, and with ``confidence`` the confidence and entropy maps."""
    paths = (folder / f"{image.stem}.png", folder / f"{image.stem}_overlay.jpg")
    if confidence:
        paths += (folder / f"{image.stem}_confidence.png", folder / f"{image.stem}_entropy.png")
    return paths


def confidence_maps(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) class probabilities -> the top probability and the entropy divided by its maximum log(K), each
    in [0, 1] as a (H, W) uint16 map (value / 65535): 65535 is certainty in the first, total doubt (every class
    equally likely) in the second."""
    top = probs.amax(0)
    entropy = -(probs * probs.clamp(min=torch.finfo(probs.dtype).tiny).log()).sum(0) / math.log(probs.shape[0])
    return tuple(
        (m.clamp(0, 1) * 65535).round().to(torch.int32).cpu().numpy().astype(np.uint16) for m in (top, entropy)
    )


def header_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, or (0, 0) when it cannot be read (the image is then reported)."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # noqa: BLE001 - any failure is reported when the image itself is read
        return 0, 0


class ImageFiles(Dataset):
    """Decodes and normalizes images in DataLoader workers; a failure is returned, not raised."""

    def __init__(self, files: list[Path], transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        try:
            image = read_image(self.files[index])
        except (OSError, ValueError) as e:
            return {"index": index, "error": str(e)}
        return {"index": index, "image": image, "input": self.transform(image=image)["image"]}


def save_prediction(
    folder: Path, path: Path, image: np.ndarray, pred: np.ndarray, palette: np.ndarray, probs: torch.Tensor | None
) -> None:
    """``<stem>.png`` (palette PNG of class indices) and ``<stem>_overlay.jpg``; with ``probs`` (K, H, W) also
    ``<stem>_confidence.png`` and ``<stem>_entropy.png`` (16-bit, :func:`confidence_maps`)."""
    files = output_paths(folder, path, probs is not None)
    written_whole(files[0], lambda: write_label_png(files[0], pred, palette))
    written_whole(files[1], lambda: save_overlay(files[1], image, pred, palette))
    if probs is not None:
        for file, values in zip(files[2:], confidence_maps(probs)):
            written_whole(file, lambda file=file, values=values: _write_png16(file, values))


def _write_png16(file: Path, values: np.ndarray) -> None:
    Image.fromarray(values).save(file)  # uint16: a 16-bit grayscale PNG


def predict_folder(
    model: torch.nn.Module,
    files: list[Path],
    output: Path,
    transform,
    palette: np.ndarray,
    settings: dict | None = None,
    batch_size: int = 4,
    num_workers: int = 2,
    device: str = "cpu",
    confidence: bool = False,
) -> list[tuple[Path, str]]:
    """Writes the masks and overlays of ``files`` to ``output``; returns the (file, reason) of unreadable ones.

    ``settings``: test-time augmentation, the keyword arguments of :func:`segkit.inference.predict_probs`.
    ``confidence``: also the confidence and entropy maps of the probabilities the masks come from.
    """
    model = model.to(device).eval()
    output.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(files)), key=lambda i: header_size(files[i]))  # equal sizes become neighbours
    dataset = ImageFiles([files[i] for i in order], transform)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=as_is)
    failed: list[tuple[Path, str]] = []
    pending: list[dict] = []

    def flush() -> None:
        batch = torch.stack([s["input"] for s in pending]).to(device)
        probs = predict_probs(model, batch, **(settings or {}))
        for sample, pred, p in zip(pending, label_maps(probs), probs):
            path = dataset.files[sample["index"]]
            save_prediction(output, path, sample["image"], pred.cpu().numpy(), palette, p if confidence else None)
        pending.clear()

    with tqdm(total=len(files), desc="predict", unit="img", dynamic_ncols=True) as bar:
        for sample in loader:
            if "error" in sample:
                path, reason = dataset.files[sample["index"]], sample["error"]
                failed.append((path, reason if str(path) in reason else f"{path}: {reason}"))
                bar.write(f"skipped: {failed[-1][1]}")
                bar.update(1)
                continue
            if pending and (sample["input"].shape != pending[0]["input"].shape or len(pending) == batch_size):
                flush()
            pending.append(sample)
            bar.update(1)
        if pending:
            flush()
    return failed
