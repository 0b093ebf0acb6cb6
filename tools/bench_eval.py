"""Peak memory and time of single-scale vs multi-scale + flip evaluation of one Cityscapes-size image.

    python tools/bench_eval.py                      # Xception-65, 1024x2048, on the GPU if there is one
    python tools/bench_eval.py --quick              # xception_tiny, 64x128 (for the tests)

Each setting runs in a fresh process (after one warm-up pass): peak GPU memory from
torch.cuda.max_memory_allocated, or on the CPU the process's peak resident memory (ru_maxrss, which includes
the Python and PyTorch libraries, about the same in every setting).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segkit.inference import predict_probs  # noqa: E402
from segkit.models import DeepLabV3Plus  # noqa: E402

SETTINGS = {
    "single scale": {"scales": [1.0], "flip": False},
    "scale 1.75 only": {"scales": [1.75], "flip": False},
    "6 scales + flip": {"scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "flip": True},
}


def run_one(encoder: str, height: int, width: int, setting: str, device: str, output_stride: int) -> dict:
    model = DeepLabV3Plus(19, encoder, output_stride).to(device).eval()
    image = torch.randn(1, 3, height, width, device=device)
    cfg = SETTINGS[setting]
    predict_probs(model, image, [1.0])  # warm-up (cuDNN algorithm choice, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    probs = predict_probs(model, image, cfg["scales"], cfg["flip"])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert probs.shape == (1, 19, height, width)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": seconds, "peak_gib": peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--output_stride", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    encoder = args.encoder or ("xception_tiny" if args.quick else "xception65")
    height, width = (64, 128) if args.quick else (1024, 2048)
    if args.one:
        print(json.dumps(run_one(encoder, height, width, args.one, args.device, args.output_stride)))
        return
    results = {}
    for setting in SETTINGS:
        cmd = [sys.executable, __file__, "--one", setting, "--encoder", encoder, "--device", args.device,
               "--output_stride", str(args.output_stride)] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[setting] = json.loads(out.strip().splitlines()[-1])
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{encoder} OS{args.output_stride}, one {height}x{width} image, {name}")
    print(f"{'setting':<18}{'seconds':>9}{'peak GiB':>10}")
    for setting, r in results.items():
        print(f"{setting:<18}{r['seconds']:9.2f}{r['peak_gib']:10.2f}")
    ratio = results["6 scales + flip"]["peak_gib"] / results["scale 1.75 only"]["peak_gib"]
    print(f"peak memory, 6 scales + flip / the largest scale alone: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "encoder": encoder, "results": results, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
