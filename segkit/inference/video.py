"""Segmenting a video: an overlay video at the input's frame rate and size, and optionally a mask per frame.

The input is a video file (any format OpenCV's FFmpeg backend reads) or a folder of frames in name order.
A full disk stops the command in one line (the partial video removed; the masks written are whole).
Decoding, the model and encoding run at once in three threads joined by short queues: OpenCV and PyTorch
release the GIL while they work, so the model does not wait for the decoder, nor the decoder for the
encoder, and at most a few batches of frames are in memory. Frames are batched as ``segkit predict`` batches
images of one size, so each frame's mask is that of the frame predicted alone as an image (but for pixels
whose two most probable classes tie to float rounding: a batch runs other convolution kernels).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.base import read_image, write_label_png
from ..data.visualize import multilabel_overlay, overlay
from ..head import Head
from ..io.disk import DiskFullError, free_bytes, written_whole
from .image_files import IMAGE_SUFFIXES
from .outputs import write_mask
from .predict import label_maps, predict_probs
from .settings import InferenceSettings

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video file (by its suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoError(ValueError):
    """A video that cannot be opened, or ends before its header said (the message names it)."""


class VideoFrames:
    """The frames of a video file or of a folder of frames (name order), RGB uint8, with the frame rate, size
    and the number of frames the file's header or the folder promises."""

    def __init__(self, source: str | Path, fps: float | None = None) -> None:
        self.source = Path(source)
        self._capture = None
        if self.source.is_dir():
            self.files = sorted(f for f in self.source.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(
                    f"--input {self.source}: no frames found (suffixes {', '.join(IMAGE_SUFFIXES)})"
                )
            first = read_image(self.files[0])
            self.fps, self.count = float(fps or 25), len(self.files)
            self.height, self.width = first.shape[:2]
            return
        if not self.source.is_file():
            raise FileNotFoundError(f"--input {self.source}: no such video file")
        self.files = None
        capture = cv2.VideoCapture(str(self.source))
        if not capture.isOpened():
            raise VideoError(f"cannot read video {self.source}: OpenCV cannot open it (truncated, corrupt or no video)")
        self._capture = capture
        self.fps = fps or capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or less: the container does not say
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def mask_name(self, index: int) -> str:
        """The name of frame ``index``'s mask: the frame file's stem, or the index (six digits)."""
        return self.files[index].stem if self.files is not None else f"{index:06d}"

    def read(self, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB frame) of every ``every``-th frame, in order (the others are skipped undecoded where the
        format allows); raises :class:`VideoError` when the video ends before its header said."""
        if self.files is not None:
            for index, file in enumerate(self.files):
                if index % every:
                    continue
                frame = read_image(file)
                if frame.shape[:2] != (self.height, self.width):
                    raise VideoError(
                        f"frame {file} is {frame.shape[1]} x {frame.shape[0]}, the first frame "
                        f"{self.width} x {self.height}: a video's frames share one size"
                    )
                yield index, frame
            return
        index = 0
        try:
            while True:
                if index % every:
                    if not self._capture.grab():
                        break
                else:
                    ok, frame = self._capture.read()
                    if not ok:
                        break
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)
                index += 1
        finally:
            self._capture.release()
        if self.count > 0 and index < self.count:
            raise VideoError(f"{self.source} ends after {index} of the {self.count} frames its header announces")


@dataclass
class VideoResult:
    """What :func:`predict_video` wrote, and why it stopped early (None when it did not)."""

    frames_written: int
    video: Path
    error: str | None = None


def video_outputs(output: Path, source: Path, masks: bool) -> tuple[Path, ...]:
    """The overlay video ``<stem>_overlay.mp4`` and, with ``masks``, the folder ``<stem>_masks``."""
    stem = source.stem if source.is_file() else source.name
    return (output / f"{stem}_overlay.mp4",) + ((output / f"{stem}_masks",) if masks else ())


_END = object()


def _produce(frames: VideoFrames, every: int, transform, out: queue.Queue, stop: threading.Event) -> None:
    """Decodes (and normalizes) every ``every``-th frame into ``out``; ends with _END, or an exception."""
    try:
        for index, frame in frames.read(every):
            if stop.is_set():
                return
            out.put((index, frame, transform(image=frame)["image"]))
    except Exception as e:  # noqa: BLE001 - handed to the main thread, which raises it
        out.put(e)
        return
    out.put(_END)


class _VideoFile:
    """OpenCV's video writer, which drops what does not fit on a full disk without saying so: after each frame
    the free space is checked, and when less than one raw frame is left :class:`DiskFullError` is raised."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.path, self.frame_bytes = path, 3 * width * height
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise VideoError(f"cannot write video {path}: OpenCV's FFmpeg backend cannot open it for writing")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)
        free = free_bytes(self.path)
        if free < self.frame_bytes:
            raise DiskFullError(self.path, None, free)

    def release(self) -> None:
        self.writer.release()


def _consume(
    writer: _VideoFile, masks: Path | None, mask_name, palette, class_names, jobs: queue.Queue, errors: list
) -> None:
    """Blends and encodes the frames from ``jobs`` in order (and writes their masks) until _END. A multi-label
    model's frames (``class_names``) are blended with the mean colour of each pixel's classes, and each class
    is a mask of its own, ``<frame>_<class>.png`` (0/255), as ``segkit predict`` writes images."""
    while (job := jobs.get()) is not _END:
        if errors:
            continue  # drain the queue so that the producer side never blocks
        index, frame, labels = job
        try:
            multilabel = class_names is not None
            blended = multilabel_overlay(frame, labels, palette) if multilabel else overlay(frame, labels, palette)
            writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR, dst=blended))
            if masks is None:
                continue
            if multilabel:
                for name, mask in zip(class_names, labels):
                    file = masks / f"{mask_name(index)}_{name}.png"
                    written_whole(file, partial(write_mask, file, mask))
            else:
                file = masks / f"{mask_name(index)}.png"
                written_whole(file, partial(write_label_png, file, labels, palette))
        except Exception as e:  # noqa: BLE001 - handed to the main thread, which raises it
            errors.append(e)


def _segment(model, decoded: queue.Queue, encoded: queue.Queue, settings, batch_size, device, progress, errors):
    """Batches the decoded frames through the model and hands each with its labels to the encoder (until it
    fails: ``errors``); the frames handed on, and the message of a video that ended early."""
    written = 0
    batch: list = []
    head = Head.of(model)
    while not errors:
        item = decoded.get()
        end = item is _END or isinstance(item, Exception)
        if batch and (end or len(batch) == batch_size):
            inputs = torch.stack([b[2] for b in batch]).to(device)
            for (index, frame, _), labels in zip(
                batch, label_maps(head, predict_probs(model, inputs, **settings.options()))
            ):
                encoded.put((index, frame, labels.cpu().numpy()))
                written += 1
            if progress is not None:
                progress(len(batch))
            batch = []
        if isinstance(item, VideoError):
            return written, str(item)
        if isinstance(item, Exception):
            raise item
        if end:
            return written, None
        batch.append(item)
    return written, None


@torch.no_grad()
def predict_video(
    model: torch.nn.Module,
    frames: VideoFrames,
    output: Path,
    *,
    transform,
    palette: np.ndarray,
    settings: InferenceSettings | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    every: int = 1,
    masks: bool = False,
    progress=None,
    class_names: list[str] | None = None,
) -> VideoResult:
    """Writes the overlay video of ``frames`` (every ``every``-th frame, at the frame rate divided by
    ``every``) and with ``masks`` one mask PNG per frame (a multi-label model, ``class_names``: one per frame and
    class), into ``output``. A video that ends early is finished with the frames read, and the result says so."""
    model = model.to(device).eval()
    paths = video_outputs(output, frames.source, masks)
    output.mkdir(parents=True, exist_ok=True)
    if masks:
        paths[1].mkdir(exist_ok=True)
    writer = _VideoFile(paths[0], frames.fps / every, frames.width, frames.height)
    decoded, encoded, errors, stop = queue.Queue(2 * batch_size), queue.Queue(2 * batch_size), [], threading.Event()
    reader = threading.Thread(target=_produce, args=(frames, every, transform, decoded, stop), daemon=True)
    encoder = threading.Thread(
        target=_consume,
        args=(writer, paths[1] if masks else None, frames.mask_name, palette, class_names, encoded, errors),
        daemon=True,
    )
    reader.start()
    encoder.start()
    try:
        written, failure = _segment(
            model, decoded, encoded, settings or InferenceSettings(), batch_size, device, progress, errors
        )
    finally:
        stop.set()
        encoded.put(_END)
        encoder.join()
        writer.release()
        while reader.is_alive():  # unblock a producer waiting on a full queue
            try:
                decoded.get(timeout=0.1)
            except queue.Empty:
                pass
    if errors:
        if isinstance(errors[0], DiskFullError) and errors[0].path == paths[0]:
            paths[0].unlink(missing_ok=True)  # a video cut short by the disk is not left behind
        raise errors[0]
    return VideoResult(written, paths[0], failure)
