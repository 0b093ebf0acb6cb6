"""Peak memory and time of ``segkit predict`` on one large image, by image size.

    python tools/benchmark_large.py --sizes 2000 6000 20000 --json large.json
    python tools/benchmark_large.py --encoder mobilenet_v2 --sizes 2000 6000 20000 --json large_mnv2.json
    python tools/benchmark_large.py --quick        # xception_tiny, 300 and 600 px, a small budget (tests)
    python tools/benchmark_large.py --geotiff --encoder xception_tiny --sizes 10000 20000 --memory_budget 1GB

``--geotiff`` writes each image as a georeferenced GeoTIFF instead (tiled 256 x 256, deflate, UTM zone 33N, a
nodata border of 64 columns), which ``segkit predict`` reads and writes window by window
(docs/geospatial.md): the rows show that its peak memory does not grow with the scene.

For each size a synthetic aerial-like PNG (smooth fields, bright lines; it compresses like a scan) is written by a
child process, and ``segkit predict`` runs on it in a fresh process with ``--threads`` threads: a DeepLabV3+ of
``--encoder`` with random weights and 21 classes (a VOC-size model, saved as a segkit checkpoint), the VOC config's
normalization, the default memory budget (half the available memory) unless ``--memory_budget`` is given.
Reported per size: the peak resident memory of the process (the kernel's maximum RSS, from wait4), the wall time,
seconds per megapixel (the wall time less the baseline's), and whether predict tiled the image (the line it
prints). A fresh process's own memory and start-up (Python, PyTorch, the model) are measured on a 64 x 64 image
and reported as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

REPO = Path(__file__).resolve().parents[1]

# written in a child process, so that the image's array is not in this process's memory
MAKE_IMAGE = r"""
import sys
import cv2
import numpy as np
path, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
coarse = rng.integers(40, 220, (max(2, height // 150), max(2, width // 150), 3), dtype=np.uint8)
image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
for _ in range(max(4, (height + width) // 400)):  # roads
    y0, y1 = rng.integers(0, height, 2)
    cv2.line(image, (0, int(y0)), (width - 1, int(y1)), (230, 230, 230), max(3, width // 500))
cv2.imwrite(path, image)
"""

# a segkit checkpoint of a DeepLabV3+ with random weights
MAKE_CHECKPOINT = r"""
import sys
import torch
from segkit.models import DeepLabV3Plus
path, encoder, classes = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
hparams = {"num_classes": classes, "encoder": encoder, "output_stride": 16}
model = DeepLabV3Plus(**hparams, pretrained=None)
torch.save({"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
"""


# the same picture as a georeferenced GeoTIFF, written in blocks of rows (needs rasterio: segkit[geo])
MAKE_GEOTIFF = r"""
import sys
import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
png, path = sys.argv[1], sys.argv[2]
image = cv2.cvtColor(cv2.imread(png), cv2.COLOR_BGR2RGB)
image[image == 0] = 1
image[:, :64] = 0
height, width = image.shape[:2]
profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8", "nodata": 0,
           "crs": CRS.from_epsg(32633), "transform": Affine(0.5, 0, 500000, 0, -0.5, 4500000), "tiled": True,
           "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
with rasterio.open(path, "w", **profile) as dst:
    for y in range(0, height, 1024):
        rows = image[y : y + 1024]
        dst.write(rows.transpose(2, 0, 1), window=Window(0, y, width, rows.shape[0]))
"""


def run_measured(argv: list[str], env: dict, cwd: Path) -> dict:
    """Runs ``argv``; its wall time, peak resident memory (bytes) and output."""
    start = perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = perf_counter() - start
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed with status {proc.returncode}:\n{text[-3000:]}")
    return {"seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * 1024, "output": text}


def predict(image: Path, checkpoint: Path, work: Path, args, env: dict) -> dict:
    output = work / f"out_{image.stem}"
    argv = [sys.executable, "-m", "segkit", "predict", "--config", str(REPO / "configs" / "voc.yaml")]
    argv += ["--ckpt_path", str(checkpoint), "--input", str(image), "--output", str(output)]
    argv += ["--num_workers", "0", "--device", "cpu", "--overwrite"]
    if args.window:
        argv += ["--window", str(args.window)]
    if args.memory_budget:
        argv += ["--memory_budget", args.memory_budget]
    result = run_measured(argv, env, work)
    tiled = [line for line in result.pop("output").splitlines() if "band by band" in line]
    result["tiled"] = tiled[0].strip() if tiled else None
    result["outputs_bytes"] = sum(f.stat().st_size for f in output.iterdir())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 6000, 20000], help="square image sides")
    parser.add_argument("--encoder", default="xception65", help="encoder of the random-weight model")
    parser.add_argument("--window", type=int, help="--window of segkit predict (default: its own)")
    parser.add_argument("--memory_budget", help="--memory_budget of segkit predict (default: its own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="xception_tiny, 300 and 600 px, a 60 MB budget")
    parser.add_argument("--geotiff", action="store_true", help="georeferenced GeoTIFFs, read window by window")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.encoder, args.memory_budget, args.window = [300, 600], "xception_tiny", "60MB", 128
    threads = str(args.threads)
    env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = work / "model.ckpt"
        subprocess.run([sys.executable, "-c", MAKE_CHECKPOINT, checkpoint, args.encoder, "21"], env=env, check=True)
        rows = {}
        for size in [64, *args.sizes]:
            image = work / f"image_{size}.png"
            subprocess.run([sys.executable, "-c", MAKE_IMAGE, image, str(size), str(size)], env=env, check=True)
            if args.geotiff:
                png, image = image, work / f"image_{size}.tif"
                subprocess.run([sys.executable, "-c", MAKE_GEOTIFF, png, image], env=env, check=True)
                png.unlink()
            row = predict(image, checkpoint, work, args, env)
            row["geotiff_bytes" if args.geotiff else "png_bytes"] = image.stat().st_size
            image.unlink()
            if size != 64:  # the time of the image itself: the process's start-up (the 64 px run) taken off
                row["seconds_per_mpx"] = (row["seconds"] - rows["baseline"]["seconds"]) / (size * size / 1e6)
            rows["baseline" if size == 64 else str(size)] = row
            print(
                f"{size:>6} x {size:<6} peak {row['peak_rss_bytes'] / 1e9:6.2f} GB  {row['seconds']:8.1f} s  "
                f"{row.get('seconds_per_mpx', 0):7.2f} s/Mpx  {'tiled' if row['tiled'] else 'whole'}",
                flush=True,
            )
    results = {
        "encoder": args.encoder,
        "classes": 21,
        "window": args.window,
        "memory_budget": args.memory_budget or "default (half the available memory)",
        "threads": args.threads,
        "input": "georeferenced GeoTIFF (tiled, deflate, nodata border)" if args.geotiff else "PNG",
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
