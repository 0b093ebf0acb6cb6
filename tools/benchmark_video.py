"""Frames per second of ``segkit predict`` on a video against the same frames as image files.

    python tools/benchmark_video.py --json video.json                      # Xception-65, 60 frames of 480 x 640
    python tools/benchmark_video.py --checkpoint best.ckpt --frames 120 --size 360 480
    python tools/benchmark_video.py --quick                                # xception_tiny, 12 small frames (tests)

The frames (a camera panning over a synthetic scene) are written once as an MP4 (mp4v) and as PNG files. Each
measurement runs in a fresh process with ``--threads`` threads, builds the model, warms up on two frames and
times one call of the function ``segkit predict`` runs: :func:`segkit.inference.image_files.predict_folder` on
the PNG folder (decoding in ``--num_workers`` processes, masks and overlays written), and
:func:`segkit.inference.video.predict_video` on the MP4 (decoding, model and encoding in three threads, the
overlay video and with ``--masks`` the masks written). Runs alternate for ``--reps`` rounds; reported: the
median frames per second of each and their ratio (video / images).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MAKE_FRAMES = r"""
import sys
from pathlib import Path
import cv2
import numpy as np
folder, count, height, width = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
scene = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (2 * width, 2 * height),
                   interpolation=cv2.INTER_CUBIC)
for _ in range(40):
    x, y = int(rng.integers(0, 2 * width)), int(rng.integers(0, 2 * height))
    cv2.circle(scene, (x, y), int(rng.integers(10, height // 4)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
(folder / "frames").mkdir()
writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
for i in range(count):
    dy, dx = (i * height) // (2 * count), (i * width) // count
    frame = np.ascontiguousarray(scene[dy : dy + height, dx : dx + width])
    writer.write(frame)
    cv2.imwrite(str(folder / "frames" / f"{i:05d}.png"), frame)
writer.release()
"""

CHILD = r"""
import json, sys, tempfile
from pathlib import Path
from time import perf_counter
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from segkit.data.palette import voc_palette
from segkit.data.transforms import eval_transform
from segkit.inference import load_inference_model
from segkit.inference.image_files import find_images, predict_folder
from segkit.inference.video import VideoFrames, predict_video
from segkit.models import DeepLabV3Plus, fold_batchnorm

if args["checkpoint"]:
    model = load_inference_model(args["checkpoint"])
else:
    torch.manual_seed(0)
    model = fold_batchnorm(DeepLabV3Plus(num_classes=21, encoder=args["encoder"], pretrained=None).eval())
transform, palette, work = eval_transform((0.5,) * 3, (0.5,) * 3), voc_palette(), Path(args["work"])
files = find_images(str(work / "frames"))
out = Path(tempfile.mkdtemp())
predict_folder(model, files[:2], out / "warm", transform=transform, palette=palette, batch_size=args["batch_size"],
               num_workers=0)
start = perf_counter()
if args["mode"] == "images":
    predict_folder(model, files, out / "images", transform=transform, palette=palette,
                   batch_size=args["batch_size"], num_workers=args["num_workers"])
    frames = len(files)
else:
    result = predict_video(model, VideoFrames(work / "clip.mp4"), out / "video", transform=transform,
                           palette=palette, batch_size=args["batch_size"], masks=args["masks"])
    frames = result.frames_written
print(json.dumps({"seconds": perf_counter() - start, "frames": frames}))
"""


def measure(mode: str, work: Path, args) -> dict:
    config = {
        "mode": mode,
        "work": str(work),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "encoder": args.encoder,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "masks": args.masks,
    }
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"the {mode} run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "frames_per_second": result["frames"] / result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a segkit checkpoint (default: --encoder, random weights)")
    parser.add_argument("--encoder", default="xception65", help="without --checkpoint: this encoder, 21 classes")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_workers", type=int, default=2, help="image-decoding processes of the image run")
    parser.add_argument("--masks", action="store_true", help="the video run also writes a mask per frame")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="xception_tiny, 12 frames of 96 x 128, 1 round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.encoder, args.frames, args.size, args.reps = "xception_tiny", 12, [96, 128], 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-c", MAKE_FRAMES, work, str(args.frames), *map(str, args.size)], check=True)
        runs = {"images": [], "video": []}
        for _ in range(args.reps):
            for mode in runs:
                runs[mode].append(measure(mode, work, args))
                print(f"{mode:>6}: {runs[mode][-1]['frames_per_second']:.2f} frames/s", flush=True)
    rows = {
        mode: {"frames_per_second": statistics.median(r["frames_per_second"] for r in rs), "frames": rs[0]["frames"]}
        for mode, rs in runs.items()
    }
    results = {
        "model": str(args.checkpoint) if args.checkpoint else f"{args.encoder} (random weights, 21 classes)",
        "frames": args.frames,
        "size": args.size,
        "batch_size": args.batch_size,
        "masks": args.masks,
        "threads": args.threads,
        "reps": args.reps,
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "rows": rows,
        "video_over_images": rows["video"]["frames_per_second"] / rows["images"]["frames_per_second"],
    }
    print(f"video / images: {results['video_over_images']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
