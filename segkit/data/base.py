"""Reading segmentation files strictly, and the dataset shared by VOC and Cityscapes.

Every problem with a file (missing, undecodable, truncated, image/mask size mismatch, mask values outside
the valid set) raises an error whose message names the file. Raised in a DataLoader worker, PyTorch re-raises
it in the main process with the worker's traceback, so the message reaches the user as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

IGNORE_INDEX = 255
_PNG_END = b"IEND\xaeB`\x82"


def jpeg_end(data: bytes) -> int | None:
    """The position just after a JPEG's end-of-image marker, found by walking its segments (an EXIF thumbnail's
    own marker does not count, bytes after the end are allowed); None when the data stops before it."""
    i, n = 2, len(data)
    while i + 2 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:
            return i + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        else:
            if i + 4 > n:
                return None
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
                while True:
                    j = data.find(b"\xff", i)
                    if j < 0 or j + 1 >= n:
                        return None
                    follower = data[j + 1]
                    if follower == 0x00 or 0xD0 <= follower <= 0xD7:  # stuffed byte, restart marker
                        i = j + 2
                    elif follower == 0xFF:
                        i = j + 1
                    else:
                        i = j
                        break
    return None


def _check_complete(path: Path, data: bytes) -> None:
    """Truncated files decode silently in OpenCV (a grey or black bottom): check the end markers."""
    if not data:
        raise ValueError(f"empty image file (0 bytes): {path}")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if _PNG_END not in data[-32:]:
            raise ValueError(f"truncated PNG file (no IEND chunk): {path}")
    elif data[:2] == b"\xff\xd8":
        if jpeg_end(data) is None:
            raise ValueError(f"truncated JPEG file (no end-of-image marker): {path}")


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); raises naming the file when it is missing, truncated or cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    data = path.read_bytes()
    _check_complete(path, data)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ValueError(f"cannot decode image file: {path} ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ValueError(f"cannot decode image file: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: no second copy of a large image


def as_rgb(image, name: str = "image") -> np.ndarray:
    """An image given as an array or a PIL image -> RGB uint8 (H, W, 3), converted as :func:`read_image` converts
    files: grey to three equal channels, alpha dropped, 16 bits to their high 8 bits; anything else is refused."""
    if isinstance(image, Image.Image):
        image = image if image.mode in ("RGB", "L", "I;16", "I;16B", "I;16L") else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: {array.dtype} pixels; give uint8 (0-255) or uint16 RGB or grey images")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ValueError(f"{name}: an image of shape {array.shape}; give (H, W), (H, W, 3) RGB or (H, W, 4) RGBA")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def read_label_png(path: Path) -> np.ndarray:
    """Label indices (H, W) uint8 from a palette (P) or grayscale (L) PNG, never converted to colours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"mask {path} has PIL mode {im.mode}; expected a palette (P) or grayscale (L) PNG")
            im.load()  # decodes fully: truncated data raises here
            return np.array(im)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot decode mask file {path}: {e}") from e


def write_label_png(path: Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Class indices (H, W) as an 8-bit PNG: a palette (P) PNG coloured with ``palette`` ((256, 3) uint8), or a
    grayscale (L) PNG without one. Either way :func:`read_label_png` reads back the same indices."""
    image = Image.fromarray(np.asarray(labels, np.uint8))  # mode L
    if palette is not None:
        image.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())  # makes it a P image, same indices
    image.save(path)


def check_values(mask: np.ndarray, valid: np.ndarray, path: Path) -> None:
    """Raises naming the file and the offending values if ``mask`` holds values outside ``valid``."""
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    bad = np.setdiff1d(present, valid)
    if bad.size:
        raise ValueError(f"mask {path} holds values {bad.tolist()} outside the valid set ({_describe(valid)})")


def _describe(values: np.ndarray) -> str:
    values = np.asarray(values)
    runs, start = [], values[0]
    for prev, cur in zip(values[:-1], values[1:]):
        if cur != prev + 1:
            runs.append((start, prev))
            start = cur
    runs.append((start, values[-1]))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def official_resize_size(height: int, width: int, min_size: int, max_size: int, factor: int | None) -> tuple[int, int]:
    """The size official DeepLab's ``preprocess_utils.resize_to_range`` gives an image: the shorter side scaled to
    ``min_size`` unless the longer side would then pass ``max_size`` (then the longer side to ``max_size``), sides
    rounded down, then raised to the next ``k * factor + 1``."""
    large = min_size / min(height, width)
    scale = (
        large
        if max(math.floor(height * large), math.floor(width * large)) <= max_size
        else max_size / max(height, width)
    )
    size = [math.floor(height * scale), math.floor(width * scale)]
    if factor:
        size = [s + (factor - (s - 1) % factor) % factor for s in size]
    return size[0], size[1]


def official_resize(
    image: np.ndarray, mask: np.ndarray, min_size: int, max_size: int, factor: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``resize_to_range`` as the official input pipeline runs it on an image and its label: bilinear and
    nearest-neighbour resizing with aligned corners (TF's ``align_corners=True``); the image is rounded back to
    its own type (the official pipeline keeps it float: at most half a grey level apart)."""
    h, w = mask.shape[:2]
    out_h, out_w = official_resize_size(h, w, min_size, max_size, factor)
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=True)
    top = np.iinfo(image.dtype).max  # 8 or 16 bits: the image keeps its type
    resized = x[0].permute(1, 2, 0).round().clamp(0, top).numpy().astype(image.dtype)

    def nearest(n_in: int, n_out: int) -> np.ndarray:  # TF: roundf(i * (n_in - 1) / (n_out - 1)), half away from 0
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return np.minimum(np.floor(np.arange(n_out) * scale + 0.5).astype(np.int64), n_in - 1)

    return resized, mask[nearest(h, out_h)][:, nearest(w, out_w)]


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    mask: Path


class SegmentationDataset(Dataset):
    """(image, mask) pairs read strictly, passed through an albumentations-style ``transform``.

    Subclasses list their ``samples`` and may override :meth:`decode_mask` (label-id mapping).

    Args:
        samples: the files of the split.
        num_classes: masks must hold only ``0..num_classes-1`` and 255 (after decode_mask).
        transform: callable ``(image=..., mask=...) -> dict`` returning tensors.
    """

    def __init__(self, samples: list[Sample], num_classes: int, transform: Callable[..., dict] | None = None) -> None:
        self.samples = samples
        self.num_classes = num_classes
        self.transform = transform
        self.resize: tuple[int, int, int | None] | None = None  # (min, max, factor): the official resize_to_range
        self.display: Callable[[np.ndarray], np.ndarray] | None = None  # image -> RGB picture (other bands)

    @property
    def ids(self) -> list[str]:
        return [s.name for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw PNG values -> train ids (0..num_classes-1, 255); checks the values."""
        check_values(raw, np.r_[np.arange(self.num_classes), IGNORE_INDEX], path)
        return raw

    def read_mask(self, path: Path) -> np.ndarray:
        """The raw mask file (H, W); subclasses read other formats."""
        return read_label_png(path)

    def load_mask(self, index: int) -> np.ndarray:
        """The train-id mask (H, W) uint8 of sample ``index``, checked."""
        path = self.samples[index].mask
        return self.decode_mask(self.read_mask(path), path)

    def read_image(self, path: Path) -> np.ndarray:
        """The image file (H, W, 3) RGB uint8; data sets of other bands read (H, W, C) uint8 or uint16."""
        return read_image(path)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (H, W, C) and its train-id mask (H, W) uint8, checked."""
        s = self.samples[index]
        image, mask = self.read_image(s.image), self.load_mask(index)
        if image.shape[:2] != mask.shape[:2]:
            raise ValueError(f"size mismatch: image {s.image} is {image.shape[:2]}, mask {s.mask} is {mask.shape[:2]}")
        if self.resize is not None:
            image, mask = official_resize(image, mask, *self.resize)
        return image, mask

    def mask_histogram(self, mask: np.ndarray) -> np.ndarray:
        """(256,) pixel counts of a decoded mask: per class (0..K-1) and ignored (255). Multi-label masks
        (H, W, K) count each class's present pixels, and as ignored the pixels not labelled for some class."""
        if mask.ndim == 3:
            hist = np.zeros(256, np.int64)
            hist[: mask.shape[2]] = (mask == 1).sum((0, 1))
            hist[IGNORE_INDEX] = int((mask == IGNORE_INDEX).any(2).sum())
            return hist
        return np.bincount(mask.ravel(), minlength=256)

    def picture(self, index: int) -> np.ndarray:
        """The RGB uint8 picture of image ``index`` (overlays, report panels): the image, or its display bands."""
        image = self.load(index)[0]
        return image if self.display is None else self.display(image)

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image, mask = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)
        if mask.ndim == 3:  # multi-label (H, W, K) -> (K, H, W), as the model's outputs
            mask = mask.permute(2, 0, 1).contiguous()
        # the mask stays uint8 (class ids and 255 fit): 8x fewer bytes than int64 through worker queues, pinned
        # memory and the host-to-device copy; SegmentationTask widens it on the device
        return {"image": image, "mask": mask, "name": self.samples[index].name}
