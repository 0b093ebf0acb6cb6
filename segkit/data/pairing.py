"""Pairing the images and masks of a data set of your own: two folders (by relative path without extension,
searched recursively) or a list file of ``image_path mask_path`` lines. Every file left without a partner is named.
"""

from __future__ import annotations

from pathlib import Path

from .base import Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")


class PairingError(ValueError):
    """Files that could not be paired; ``problems`` names each one, ``samples`` holds the pairs that were found."""

    def __init__(self, message: str, problems: list[str], samples: list[Sample]) -> None:
        super().__init__(message)
        self.problems, self.samples = problems, samples


def _files(folder: Path, extensions: tuple[str, ...]) -> dict[str, list[Path]]:
    """Files under ``folder`` (recursively) by relative path without extension."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in extensions and path.is_file():
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), []).append(path)
    return found


def pair_folders(images: Path, masks: Path, mask_suffix: str = "") -> tuple[list[Sample], list[str]]:
    """Images and masks paired by relative path without extension (the mask's name may end in ``mask_suffix``,
    e.g. ``_mask``); returns the pairs, sorted by name, and one problem per file that has no partner."""
    for folder in (images, masks):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    image_files, mask_files = _files(images, IMAGE_EXTENSIONS), {}
    problems = []
    for key, paths in _files(masks, MASK_EXTENSIONS).items():
        if mask_suffix and not key.endswith(mask_suffix):
            problems += [f"mask without the suffix {mask_suffix!r}: {p}" for p in paths]
            continue
        mask_files[key[: len(key) - len(mask_suffix)]] = paths
    samples = []
    for name in sorted(set(image_files) | set(mask_files)):
        ims, ms = image_files.get(name, []), mask_files.get(name, [])
        if len(ims) > 1 or len(ms) > 1:
            problems.append(f"several files for {name!r}: {', '.join(str(p) for p in ims + ms)}")
        elif not ms:
            problems.append(f"image without a mask: {ims[0]} (no {masks / name}{mask_suffix}.png or .bmp/.tif)")
        elif not ims:
            problems.append(f"mask without an image: {ms[0]}")
        else:
            samples.append(Sample(name, ims[0], ms[0]))
    return samples, problems


def read_pair_list(root: Path, list_file: Path) -> tuple[list[Sample], list[str]]:
    """``image_path mask_path`` per line (relative to ``root``; blank lines and ``#`` comments skipped); the
    sample's name is the image path without extension. Returns the pairs and one problem per bad line."""
    if not list_file.is_file():
        raise FileNotFoundError(f"list file not found: {list_file}")
    samples, problems, seen = [], [], set()
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"line {number} of {list_file}"
        if len(fields) != 2:
            problems.append(f"{where}: expected 'image_path mask_path', got {line.strip()!r}")
            continue
        image, mask = (root / f for f in fields)
        missing = [str(p) for p in (image, mask) if not p.is_file()]
        name = Path(fields[0]).with_suffix("").as_posix()
        if missing:
            problems.append(f"{where}: file not found: {', '.join(missing)}")
        elif name in seen:
            problems.append(f"{where}: {fields[0]} is listed twice")
        else:
            seen.add(name)
            samples.append(Sample(name, image, mask))
    return samples, problems
