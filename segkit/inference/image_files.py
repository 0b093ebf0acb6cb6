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
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.bands import TIFF_SUFFIXES, read_header
from ..data.base import read_image
from ..data.sampling import as_is
from ..head import Head
from ..io.disk import DiskFullError
from ..io.geotiff import has_geotags
from .memory import MAX_PIXELS, MemoryPlan, ModelFootprint, default_budget
from .outputs import ImageOutputs
from .predict import predict_probs
from .rasters import NODATA
from .settings import InferenceSettings
from .tiled import tiled_probs

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


def _save_batch(output, paths, pictures, probs, palette, confidence: bool, class_names, head: Head) -> None:
    """The files of a batch's predictions, decided by ``head`` (:class:`~segkit.inference.outputs.ImageOutputs`,
    each image one band)."""
    for path, picture, decided, p in zip(paths, pictures, head.decide(probs), probs):
        files = ImageOutputs(
            output, path, picture, head=head, palette=palette, class_names=class_names, confidence=confidence
        )
        files.add(0, decided, p)
        files.write()


def window_reader(image: np.ndarray, transform, device: str = "cpu"):
    """The :data:`~segkit.inference.tiled.RegionReader` of ``image``: each region normalized by ``transform``
    as it is read, on ``device``."""

    def read(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        return transform(image=np.ascontiguousarray(image[y0:y1, x0:x1]))["image"][None].to(device)

    return read


def _predict_tiled_file(
    model, output: Path, path: Path, transform, palette, plan: MemoryPlan, device, say, read, display, class_names
) -> str | None:
    """Reads and predicts one image band by band (saying so with ``say``), writing the files an image predicted
    whole gets; the reason when it cannot be read. The image becomes the overlay in place, band by band, once no
    later window reads those rows; an image of other bands is shown through ``display`` (its RGB picture is
    then one more full-size array)."""
    try:
        image = read(path)
    except (OSError, ValueError) as e:
        say(f"skipped: {e}")
        return str(e)
    say(plan.describe(path.name, *image.shape[:2]))
    head = Head.of(model)
    picture = image if display is None else display(image)
    files = ImageOutputs(
        output, path, picture, head=head, palette=palette, class_names=class_names, confidence=plan.confidence
    )
    reader = window_reader(image, transform, device)
    for y0, probs in tiled_probs(model, reader, *image.shape[:2], **plan.tile_options):
        files.add(y0, head.decide(probs[None])[0], probs)
    files.write()
    return None


def _predict_raster_file(
    model, path: Path, output, transform, plan, palette, class_names, bands, pixel_max, nodata, device, say
) -> str | None:
    """Segments a georeferenced raster on its grid (:func:`~segkit.inference.rasters.predict_raster`); the reason
    when it cannot be read or predicted within the budget."""
    from ..io.geotiff import rasterio_module

    try:
        rasterio_module()
    except ImportError as e:
        return f"{path}: a georeferenced raster, predicted on its grid; {e}"
    from .rasters import predict_raster

    header = header_size(path)
    reason = plan.refusal(path, *header, raster=True)
    if reason:
        return reason
    names = class_names or [str(i) for i in range(Head.of(model).num_classes)]
    try:
        predict_raster(
            model,
            path,
            output,
            transform=transform,
            plan=plan,
            palette=palette,
            class_names=names,
            bands=bands,
            pixel_max=pixel_max,
            confidence=plan.confidence,
            nodata=nodata,
            device=device,
            say=say,
        )
    except (OSError, ValueError) as e:
        if isinstance(e, DiskFullError):
            raise
        return str(e) if str(path) in str(e) else f"{path}: {e}"
    return None


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
    bands: Sequence[int] | None = None,
    pixel_max: int = 255,
    nodata: int = NODATA,
) -> list[tuple[Path, str]]:
    """Writes the masks and overlays of ``files`` to ``output``; returns the (file, reason) of those not written.

    ``settings``: the test-time passes, windows and padding.
    ``confidence``: also the confidence and entropy maps of the probabilities the masks come from.
    ``memory_budget``: bytes (default :func:`~segkit.inference.memory.default_budget`); an image that would
    need more whole is predicted band by band and said so. ``max_pixels``: a larger header is refused unread.
    ``read``: path -> image as the model's data set reads it (RGB by default); ``display``: such an image ->
    the RGB uint8 picture of the overlay (None: the image is RGB). ``class_names``: the model's classes (a
    multi-label model writes one mask per class, each at its threshold). The files: :mod:`segkit.inference.outputs`.

    A georeferenced TIFF is segmented on its own grid, read and written window by window
    (:mod:`segkit.inference.rasters`, with rasterio): its ``bands`` (None: all) of ``pixel_max``, its labels
    ``nodata`` where it has no data, the ``class_names`` (all of them) in its metadata.
    """
    model = model.to(device).eval()
    settings = settings or InferenceSettings()
    output.mkdir(parents=True, exist_ok=True)
    budget = memory_budget or default_budget(device)
    plan = MemoryPlan(ModelFootprint.measure(model), settings, budget, confidence=confidence, max_pixels=max_pixels)
    rasters = [f for f in files if has_geotags(f)]
    files = [f for f in files if f not in rasters]
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

    with tqdm(total=len(files) + len(rasters), desc="predict", unit="img", dynamic_ncols=True) as bar:
        for _, reason in failed:
            bar.write(f"skipped: {reason}")
            bar.update(1)
        for path in rasters:
            error = _predict_raster_file(
                model, path, output, transform, plan, palette, class_names, bands, pixel_max, nodata, device, bar.write
            )
            if error:
                failed.append((path, error))
                bar.write(f"skipped: {error}")
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
