"""``segkit predict``: segment your own images with a trained checkpoint.

    segkit predict --config voc.yaml --ckpt_path CKPT --input photos/ --output out/
    segkit predict --config cityscapes.yaml --ckpt_path CKPT --input "frames/**/*.png" --output out/ \\
        --scales 0.75 1.0 1.25 --flip

For every image ``<stem>.png`` (class indices, a palette PNG coloured like the data set's masks) and
``<stem>_overlay.jpg`` (the image blended with the colour mask) are written at the image's own resolution.
The config's data section gives the normalization, the class names and the colours. Images of the same size
are batched together (sorted by size first), so each prediction equals that of the image alone; an image
that cannot be read is reported by name and skipped, and the command then exits with status 1 after writing
all the others.
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.base import read_image, write_label_png
from .data.sampling import as_is
from .data.visualize import save_overlay
from .inference import load_inference_model, predict_labels
from .options import add_inference_options, config_datamodule, inference_settings, model_parser

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
            raise ValueError(f"{stems[f.stem]} and {f} would write the same output files ({f.stem}.png); "
                             "predict them into different --output folders")
        stems[f.stem] = f
    return files


def output_paths(folder: Path, image: Path) -> tuple[Path, Path]:
    return folder / f"{image.stem}.png", folder / f"{image.stem}_overlay.jpg"


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


def save_prediction(folder: Path, path: Path, image: np.ndarray, pred: np.ndarray, palette: np.ndarray) -> None:
    """``<stem>.png`` (palette PNG of class indices) and ``<stem>_overlay.jpg``."""
    mask_file, overlay_file = output_paths(folder, path)
    write_label_png(mask_file, pred, palette)
    save_overlay(overlay_file, image, pred, palette)


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
) -> list[tuple[Path, str]]:
    """Writes the masks and overlays of ``files`` to ``output``; returns the (file, reason) of unreadable ones.

    ``settings``: test-time augmentation, the keyword arguments of :func:`segkit.inference.predict_probs`.
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
        for sample, pred in zip(pending, predict_labels(model, batch, **(settings or {}))):
            save_prediction(output, dataset.files[sample["index"]], sample["image"], pred.cpu().numpy(), palette)
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


def parser():
    from jsonargparse import ActionYesNo

    p = model_parser("segkit predict", "Segment a folder of images with a checkpoint.")
    p.add_argument("--input", type=str, required=True, help="an image folder, a glob pattern or one image")
    p.add_argument("--output", type=str, required=True, help="folder for <stem>.png and <stem>_overlay.jpg")
    add_inference_options(p)
    p.add_argument("--batch_size", type=int, default=4, help="images of one size predicted together")
    p.add_argument("--num_workers", type=int, default=2, help="image-decoding processes")
    p.add_argument("--overwrite", action=ActionYesNo, default=False, help="replace existing output files")
    return p


def main(args: list[str]) -> None:
    from .data.transforms import eval_transform

    p = parser()
    cfg = p.parse_args(args)
    if cfg.batch_size < 1:
        p.error(f"--batch_size must be at least 1, got {cfg.batch_size}")
    datamodule = config_datamodule(p, cfg)
    files = find_images(cfg.input)
    output = Path(cfg.output)
    existing = [p for f in files for p in output_paths(output, f) if p.exists()]
    if existing and not cfg.overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        sys.exit(f"segkit predict: {len(existing)} output file(s) already exist ({shown}); "
                 "choose another --output or pass --overwrite")
    model = load_inference_model(cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
    failed = predict_folder(model, files, output, eval_transform(datamodule.mean, datamodule.std), datamodule.palette,
                            inference_settings(cfg), cfg.batch_size, cfg.num_workers, cfg.device)
    print(f"segkit predict: wrote {len(files) - len(failed)} of {len(files)} image(s) to {output}", flush=True)
    if failed:
        print(f"segkit predict: {len(failed)} image(s) could not be read:", file=sys.stderr)
        for _, reason in failed:
            print(f"  {reason}", file=sys.stderr)
        sys.exit(1)
