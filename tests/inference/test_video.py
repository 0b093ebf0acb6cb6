"""`segkit predict` on videos: an overlay video with as many frames as went in, at the input's rate and size,
masks equal to each decoded frame predicted as an image, --every, folders of frames, and broken videos named."""

import shutil

import numpy as np
import pytest
from helpers import CONFIGS, assert_labels_but_ties, run_here
from PIL import Image
from videos import decoded_frames, pan_frames, write_video

from segkit.data.transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform
from segkit.inference import load_inference_model, predict_probs


def _assert_predicted_alone(mask: np.ndarray, model, frame: np.ndarray) -> None:
    """``mask`` is ``frame`` predicted alone as an image (a batch of frames runs other convolution kernels than
    one frame: ties within float rounding may go either way)."""
    x = eval_transform(XCEPTION_MEAN, XCEPTION_STD)(image=frame)["image"][None]
    assert_labels_but_ties(mask, predict_probs(model, x)[0])


def _predict(capsys, tmp_path, *args):
    return run_here(capsys, "predict", "--config", CONFIGS / "voc.yaml", *args, cwd=tmp_path)


def test_a_video_gives_an_overlay_video_and_a_mask_per_frame(varied_checkpoint, clip, tmp_path, capsys):
    """24 frames at 12 frames/s in, batches of 5 (the last one short): 24 frames out at 12 frames/s and the
    input's size; each mask is the decoded frame predicted alone as an image, and holds several classes."""
    out = tmp_path / "out"
    ckpt = ("--ckpt_path", str(varied_checkpoint))
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(clip), "--output", str(out), "--masks", "--batch_size", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote 24 frames to {out / 'clip_overlay.mp4'} and 24 masks to {out / 'clip_masks'}" in proc.stdout
    written, fps = decoded_frames(out / "clip_overlay.mp4")
    assert len(written) == 24 and fps == pytest.approx(12)
    assert written[0].shape == (96, 128, 3)
    inputs, _ = decoded_frames(clip)
    model = load_inference_model(varied_checkpoint)
    masks = sorted((out / "clip_masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(24)]
    seen = set()
    for i in (0, 11, 23):
        mask = np.array(Image.open(masks[i]))
        _assert_predicted_alone(mask, model, inputs[i])
        seen |= set(np.unique(mask).tolist())
    assert len(seen) >= 2  # by construction on the first decoded frame (conftest.VARIED_SETTINGS)
    # the overlay is the frame blended with the mask's colours: it differs from the frame where labelled
    assert np.abs(written[0].astype(int) - inputs[0].astype(int)).mean() > 5

    again = _predict(capsys, tmp_path, *ckpt, "--input", str(clip), "--output", str(out))
    assert again.returncode == 1 and "clip_overlay.mp4 already exists" in again.stderr


def test_every_nth_frame_and_a_folder_ofpan_frames(varied_checkpoint, clip, photos, tmp_path, capsys):
    """--every 5 on 24 frames: frames 0, 5, 10, 15, 20 at 12 / 5 frames/s. A folder of 7 PNG frames with --fps
    10: 7 frames out at 10 frames/s, the masks named after the frames and equal to their predictions."""
    ckpt = ("--ckpt_path", str(varied_checkpoint))
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(clip), "--output", str(tmp_path / "a"), "--every", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    written, fps = decoded_frames(tmp_path / "a" / "clip_overlay.mp4")
    assert len(written) == 5 and fps == pytest.approx(2.4)

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = pan_frames(photos, 7)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i:03d}.png")
    out = tmp_path / "b"
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(folder), "--output", str(out), "--fps", "10", "--masks")
    assert proc.returncode == 0, proc.stderr[-2000:]
    written, fps = decoded_frames(out / "frames_overlay.mp4")
    assert len(written) == 7 and fps == pytest.approx(10)
    model = load_inference_model(varied_checkpoint)
    _assert_predicted_alone(np.array(Image.open(out / "frames_masks" / "f006.png")), model, frames[6])


def test_broken_videos_are_named_in_one_line(varied_checkpoint, photos, tmp_path, capsys):
    """A truncated AVI (its header announces 30 frames, 15 can be read): the frames read are written and the
    command says what happened, exit 1. Not a video, and a frame of another size in a folder: one line each."""
    avi = tmp_path / "cut.avi"
    write_video(avi, pan_frames(photos, 30), fps=25, fourcc="MJPG")
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])
    readable = len(decoded_frames(avi)[0])
    assert 0 < readable < 30
    ckpt = ("--ckpt_path", str(varied_checkpoint))
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(avi), "--output", str(tmp_path / "out"))
    assert proc.returncode == 1
    overlay = tmp_path / "out" / "cut_overlay.mp4"
    line = f"segkit predict: {avi} ends after {readable} of the 30 frames its header announces; wrote {readable} "
    assert line + f"frames to {overlay}" in proc.stderr, proc.stderr[-2000:]
    assert len(decoded_frames(overlay)[0]) == readable

    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(junk), "--output", str(tmp_path / "out2"))
    assert proc.returncode == 1 and f"cannot read video {junk}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(pan_frames(photos, 3)):
        Image.fromarray(frame if i != 2 else frame[:50]).save(folder / f"f{i}.png")
    proc = _predict(capsys, tmp_path, *ckpt, "--input", str(folder), "--output", str(tmp_path / "out3"), "--fps", "5")
    assert proc.returncode == 1
    assert f"frame {folder / 'f2.png'} is 128 x 50, the first frame 128 x 96" in proc.stderr


def test_a_full_disk_stops_the_video_in_one_line(varied_checkpoint, clip, small_disk, capsys):
    """The overlay video and 24 masks on a filesystem with 60 KB left: one line naming what did not fit, exit 1,
    no partial video left; the masks written are whole."""
    out = small_disk / "out"
    args = ("--ckpt_path", str(varied_checkpoint), "--input", str(clip), "--output", str(out), "--masks")
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 60_000))  # room for a few masks
    proc = _predict(capsys, small_disk.parent, *args)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"segkit predict: no space left for {out}"), proc.stderr[-2000:]
    assert not (out / "clip_overlay.mp4").exists()
    for mask in (out / "clip_masks").glob("*.png"):
        Image.open(mask).load()
    assert any((out / "clip_masks").glob("*.png"))
