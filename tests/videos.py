"""Videos for the tests: frames of a camera panning over a photo, written and decoded by OpenCV."""

import cv2
import numpy as np


def pan_frames(photos, count: int, size=(96, 128)) -> list[np.ndarray]:
    """``count`` RGB frames of a camera panning over a photo."""
    photo = cv2.cvtColor(cv2.imread(str(next(photos.glob("*513x513.png")))), cv2.COLOR_BGR2RGB)
    h, w = size
    return [np.ascontiguousarray(photo[3 * i : 3 * i + h, 5 * i : 5 * i + w]) for i in range(count)]


def write_video(path, frames, fps: float, fourcc: str = "mp4v") -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def decoded_frames(path) -> tuple[list[np.ndarray], float]:
    """Every frame of a video as OpenCV decodes it (RGB), and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, fps
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
