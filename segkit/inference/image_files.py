"""Segmenting files of images with a model: masks and overlays at each image's own resolution.

For every image ``<stem>.png`` (class indices, a palette PNG coloured like the data set's masks) and
``<stem>_overlay.jpg`` (the image blended with the colour mask) are written. Images of the same size are
batched together (sorted by size first), so each prediction equals that of the image alone; an image that
cannot be read is reported by name and skipped.

Images of other bands than RGB are read by the data set's reader (``read``) and shown in the overlay as its
three display bands (``display``).

Memory is bounded by a budget, not by the image: an image whose in-memory prediction would need more
(:class:`~segkit.inference.memory.ModelFootprint`) is predicted band by band (:mod:`.tiled`), and one whose
header claims more than ``max_pixels`` is refused before it is decoded.
"""

from __future__ import annotations

import glob
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.bands import TIFF_SUFFIXES, read_header
from ..data.base import read_image, write_label_png
from ..data.sampling import as_is
from ..data.visualize import overlay, save_overlay
from ..head import Head
from ..io.disk import written_whole
from .memory import MAX_PIXELS, MemoryPlan, ModelFootprint, default_budget
from .predict import label_maps, predict_probs
from .settings import InferenceSettings
from .tiled import tiled_labels, tiled_probs

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


def output_paths(
    folder: Path, image: Path, confidence: bool = False, class_names: list[str] | None = None
) -> tuple[Path, ...]:
    """The mask and the overlay, and with ``confidence`` the confidence and entropy maps; for a multi-label
    model (``class_names``) one mask per class, ``<stem>_<class>.png``, and the overlay."""
    if class_names is not None:
        return (*(folder / f"{image.stem}_{name}.png" for name in class_names), folder / f"{image.stem}_overlay.jpg")
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
    """(height, width) from the file header, or (0, 0) when it cannot be read (the image is then reported).

    PIL's own decompression-bomb check is off here: its limit (179 Mpx) is not segkit's, which
    :func:`predict_folder` applies to the size read.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:  # multi-band and 16-bit TIFFs, which PIL does not all read
            header = read_header(path)
            return header.height, header.width
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size[1], im.size[0]
    except Exception:  # noqa: BLE001 - any failure is reported when the image itself is read
        return 0, 0
    finally:
        Image.MAX_IMAGE_PIXELS = limit


class ImageFiles(Dataset):
    """Decodes and normalizes images in DataLoader workers; a failure is returned, not raised. The images at
    the ``tiled`` positions are left to the main process, which reads and predicts them band by band."""

    def __init__(self, files: list[Path], transform, tiled: frozenset[int] = frozenset(), read=read_image) -> None:
        self.files, self.transform, self.tiled, self.read = files, transform, tiled, read

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        if index in self.tiled:
            return {"index": index, "tiled": True}
        try:
            image = self.read(self.files[index])
        except (OSError, ValueError) as e:
            return {"index": index, "error": str(e)}
        return {"index": index, "image": image, "input": self.transform(image=image)["image"]}


def save_prediction(
    folder: Path, path: Path, image: np.ndarray, pred: np.ndarray, palette: np.ndarray, probs: torch.Tensor | None
) -> None:
    """``<stem>.png`` (palette PNG of class indices) and ``<stem>_overlay.jpg`` on ``image`` (RGB uint8); with
    ``probs`` (K, H, W) also ``<stem>_confidence.png`` and ``<stem>_entropy.png`` (16-bit, :func:`confidence_maps`)."""
    files = output_paths(folder, path, probs is not None)
    written_whole(files[0], lambda: write_label_png(files[0], pred, palette))
    written_whole(files[1], lambda: save_overlay(files[1], image, pred, palette))
    if probs is not None:
        for file, values in zip(files[2:], confidence_maps(probs)):
            written_whole(file, lambda file=file, values=values: _write_png16(file, values))


def save_multilabel_prediction(
    folder: Path, path: Path, image: np.ndarray, decided: np.ndarray, class_names: list[str], palette: np.ndarray
) -> None:
    """One 0/255 mask per class, ``<stem>_<class>.png``, from ``decided`` (K, H, W) booleans, and the overlay:
    each pixel blended with the mean colour of the classes present there."""
    files = output_paths(folder, path, class_names=class_names)
    _write_class_masks(files, decided)
    blended = multilabel_overlay(image, decided, palette)
    written_whole(files[-1], lambda: Image.fromarray(blended).save(files[-1], quality=90))


def _write_class_masks(files: list[Path], decided: np.ndarray) -> None:
    for file, mask in zip(files, decided):
        written_whole(file, lambda file=file, mask=mask: Image.fromarray(mask.astype(np.uint8) * 255).save(file))


def multilabel_overlay(image: np.ndarray, decided: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB uint8 ``image`` with each pixel blended half and half with the mean colour of the classes present
    there (``decided``: (K, H, W) booleans); pixels of no class are left as they are."""
    colours = np.asarray(palette, np.float32)[: len(decided)]
    count = decided.sum(0)
    mean = np.einsum("khw,kc->hwc", decided.astype(np.float32), colours) / np.maximum(count, 1)[..., None]
    return np.where(count[..., None] > 0, 0.5 * image + 0.5 * mean, image).round().astype(np.uint8)


def _save_batch(output, paths, pictures, probs, palette, confidence: bool, class_names, head: Head) -> None:
    """The files of a batch's predictions, decided by ``head``: :func:`save_prediction` per image, or for a
    multi-label model (``class_names``) :func:`save_multilabel_prediction`."""
    if class_names is not None:
        for path, picture, decided in zip(paths, pictures, head.decide(probs).cpu().numpy()):
            save_multilabel_prediction(output, path, picture, decided, class_names, palette)
        return
    for path, picture, pred, p in zip(paths, pictures, label_maps(head, probs), probs):
        save_prediction(output, path, picture, pred.cpu().numpy(), palette, p if confidence else None)


def _write_png16(file: Path, values: np.ndarray) -> None:
    Image.fromarray(values).save(file)  # uint16: a 16-bit grayscale PNG


def predict_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    transform,
    options: dict,
    device: str = "cpu",
    on_rows: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> np.ndarray:
    """The (H, W) uint8 label map of an RGB uint8 ``image`` predicted band by band (:func:`tiled_labels` with
    ``options``, :attr:`MemoryPlan.tile_options`), each window normalized by ``transform`` as it is read."""

    read = window_reader(image, transform, device)
    return tiled_labels(model, read, *image.shape[:2], **options, on_rows=on_rows).numpy()


def window_reader(image: np.ndarray, transform, device: str = "cpu"):
    """The :data:`~segkit.inference.tiled.RegionReader` of ``image``: each region normalized by ``transform``
    as it is read, on ``device``."""

    def read(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        return transform(image=np.ascontiguousarray(image[y0:y1, x0:x1]))["image"][None].to(device)

    return read


def save_tiled_prediction(
    model: torch.nn.Module,
    folder: Path,
    path: Path,
    image: np.ndarray,
    transform,
    palette: np.ndarray,
    options: dict,
    device: str = "cpu",
    confidence: bool = False,
    display: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """:func:`save_prediction` of an image too large to predict whole: its full-size arrays are the 8-bit image,
    the label map (and the 16-bit confidence maps). The image becomes the overlay in place, band by band, once
    no later window reads those rows (``image``, RGB uint8, is overwritten). An image of other bands is shown
    through ``display`` (its RGB picture is then one more full-size array)."""
    maps = [np.empty(image.shape[:2], np.uint16) for _ in range(2)] if confidence else []
    picture = image if display is None else display(image)

    def on_rows(y0: int, rows: torch.Tensor, probs: torch.Tensor) -> None:
        rows = rows.numpy()
        band = picture[y0 : y0 + len(rows)]
        band[:] = overlay(band, rows, palette)
        for target, values in zip(maps, confidence_maps(probs) if confidence else ()):
            target[y0 : y0 + len(rows)] = values

    labels = predict_tiled(model, image, transform, options, device, on_rows)
    files = output_paths(folder, path, confidence)
    written_whole(files[0], lambda: write_label_png(files[0], labels, palette))
    labels = None  # freed before the overlay is encoded
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR, dst=picture)
    written_whole(files[1], lambda: _write_encoded(files[1], bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]))
    for file, values in zip(files[2:], maps):
        written_whole(file, lambda file=file, values=values: _write_png16(file, values))


def save_tiled_multilabel_prediction(
    model: torch.nn.Module,
    folder: Path,
    path: Path,
    image: np.ndarray,
    transform,
    palette: np.ndarray,
    options: dict,
    names: list[str],
    device: str = "cpu",
    display: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """:func:`save_multilabel_prediction` of an image too large to predict whole (``names``: the classes): its
    full-size arrays are the image and the K masks (one byte a pixel each); the image becomes the overlay in
    place, band by band, as in :func:`save_tiled_prediction`."""
    decided = np.empty((len(names), *image.shape[:2]), bool)
    picture = image if display is None else display(image)
    head = Head.of(model)
    read = window_reader(image, transform, device)
    for y0, probs in tiled_probs(model, read, *image.shape[:2], **options):
        band = head.decide(probs[None])[0].cpu().numpy()
        rows = slice(y0, y0 + band.shape[1])
        decided[:, rows] = band
        picture[rows] = multilabel_overlay(picture[rows], band, palette)
    files = output_paths(folder, path, class_names=names)
    _write_class_masks(files, decided)
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR, dst=picture)
    written_whole(files[-1], lambda: _write_encoded(files[-1], bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]))


def _predict_tiled_file(
    model, output: Path, path: Path, transform, palette, plan: MemoryPlan, device, say, read, display, class_names
) -> str | None:
    """Reads and predicts one image band by band (saying so with ``say``); the reason when it cannot be read."""
    try:
        image = read(path)
    except (OSError, ValueError) as e:
        say(f"skipped: {e}")
        return str(e)
    say(plan.describe(path.name, *image.shape[:2]))
    if class_names is not None:
        options = plan.tile_options
        save_tiled_multilabel_prediction(
            model, output, path, image, transform, palette, options, class_names, device, display
        )
        return None
    save_tiled_prediction(
        model, output, path, image, transform, palette, plan.tile_options, device, plan.confidence, display
    )
    return None


def _write_encoded(file: Path, image: np.ndarray, params: list[int]) -> None:
    """Encodes in memory with OpenCV (no copy of the pixels) and writes with Python, whose errors (a full
    disk) are raised rather than returned as False."""
    ok, data = cv2.imencode(file.suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {file} ({image.shape[1]} x {image.shape[0]})")
    with open(file, "wb") as f:
        f.write(data)


def predict_folder(
    model: torch.nn.Module,
    files: list[Path],
    output: Path,
    *,
    transform,
    palette: np.ndarray,
    settings: InferenceSettings | None = None,
    batch_size: int = 4,
    num_workers: int = 2,
    device: str = "cpu",
    confidence: bool = False,
    memory_budget: int | None = None,
    max_pixels: int = MAX_PIXELS,
    read: Callable[[Path], np.ndarray] = read_image,
    display: Callable[[np.ndarray], np.ndarray] | None = None,
    class_names: list[str] | None = None,
) -> list[tuple[Path, str]]:
    """Writes the masks and overlays of ``files`` to ``output``; returns the (file, reason) of those not written.

    ``settings``: the test-time passes, windows and padding.
    ``confidence``: also the confidence and entropy maps of the probabilities the masks come from.
    ``memory_budget``: bytes (default :func:`~segkit.inference.memory.default_budget`); an image that would
    need more whole is predicted band by band and said so. ``max_pixels``: a larger header is refused unread.
    ``read``: path -> image as the model's data set reads it (RGB by default); ``display``: such an image ->
    the RGB uint8 picture of the overlay (None: the image is RGB). ``class_names``: for a multi-label model, its
    classes: one mask per class, each at the model's threshold (:func:`save_multilabel_prediction`, tiled
    :func:`save_tiled_multilabel_prediction`).
    """
    model = model.to(device).eval()
    settings = settings or InferenceSettings()
    output.mkdir(parents=True, exist_ok=True)
    budget = memory_budget or default_budget(device)
    plan = MemoryPlan(ModelFootprint.measure(model), settings, budget, confidence=confidence, max_pixels=max_pixels)
    sizes = [header_size(f) for f in files]
    order, failed = plan.admit(files, sizes)
    tiled = frozenset(n for n, i in enumerate(order) if plan.tiled(*sizes[i]))
    dataset = ImageFiles([files[i] for i in order], transform, tiled, read)
    show = display or (lambda image: image)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=as_is)
    pending: list[dict] = []

    def flush() -> None:
        probs = predict_probs(model, torch.stack([s["input"] for s in pending]).to(device), **settings.options())
        paths = [dataset.files[s["index"]] for s in pending]
        pictures = [show(s["image"]) for s in pending]
        _save_batch(output, paths, pictures, probs, palette, confidence, class_names, Head.of(model))
        pending.clear()

    with tqdm(total=len(files), desc="predict", unit="img", dynamic_ncols=True) as bar:
        for _, reason in failed:
            bar.write(f"skipped: {reason}")
            bar.update(1)
        for sample in loader:
            path = dataset.files[sample["index"]]
            if "tiled" in sample:
                if pending:
                    flush()
                error = _predict_tiled_file(
                    model, output, path, transform, palette, plan, device, bar.write, read, display, class_names
                )
                if error:
                    failed.append((path, error))
                bar.update(1)
                continue
            if "error" in sample:
                reason = sample["error"]
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
