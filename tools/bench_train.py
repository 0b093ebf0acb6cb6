"""Training and inference speed of DeepLabV3+ on one device, per precision / memory format / compilation.

    python tools/bench_train.py                       # on a GPU: Xception-65, crop 513, batch 16 per device
    python tools/bench_train.py --quick               # CPU smoke test: xception_tiny, 65 px, batch 2
    python tools/bench_train.py --json results.json --variants bf16 bf16+cl

A training step is what segkit's task does per iteration (forward, cross-entropy, backward, SGD update with
momentum); images/s and the peak memory are measured after warm-up (which includes cuDNN's algorithm search
and, for compiled variants, compilation, reported on its own). Inference: forward under no_grad.

Variants: ``fp32`` (cuDNN's default TF32 convolutions on GPUs), ``bf16`` (autocast, as
``trainer.precision: bf16-mixed``), ``+cl`` channels-last memory format (``model.channels_last``),
``+compile`` ``torch.compile`` (``model.compile``). Compilation takes minutes on a CPU: ``--quick`` compiles
only ``bf16+cl+compile``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segkit.models import DeepLabV3Plus  # noqa: E402

VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+compile", "bf16+cl+compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def timed(fn, device: torch.device, steps: int) -> float:
    """Seconds per call of ``fn``, measured over ``steps`` calls after the caller's warm-up."""
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def train_step_bench(encoder: str, size: int, batch: int, variant: str, device: torch.device, steps: int,
                     inference: bool = True, num_classes: int = 21) -> dict:
    """Speed and peak memory of one variant: training step, then (optionally) inference."""
    bf16, channels_last, compile_ = "bf16" in variant, "+cl" in variant, "compile" in variant
    torch.manual_seed(0)
    model = DeepLabV3Plus(num_classes, encoder, 16).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    if compile_:
        model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch, size, size), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()  # compilation, cuDNN algorithm search
    sync(device)
    first = time.perf_counter() - start
    for _ in range(2):
        step()
    dt = timed(step, device, steps)
    out = {"variant": variant, "step_s": dt, "train_img_s": batch / dt, "train_peak_gib": peak_gib(device),
           "first_step_s": first}
    if inference:
        model.eval()

        def forward() -> None:
            with torch.no_grad(), autocast:
                model(x)

        for _ in range(2):
            forward()
        infer = timed(forward, device, steps)
        out |= {"infer_img_s": batch / infer, "infer_peak_gib": peak_gib(device)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the CPU")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as Lightning's default for fixed-size crops
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    encoder, size, batch, steps = ("xception_tiny", 65, 2, 2) if args.quick else ("xception65", 513, 16, 10)
    variants = args.variants or (("fp32", "bf16", "bf16+cl", "bf16+cl+compile") if args.quick else VARIANTS)

    print(f"DeepLabV3+ {encoder}, OS16, crop {size}, batch {batch} per device, {name}, torch {torch.__version__}")
    header = (f"{'variant':<16} {'train img/s':>11} {'step ms':>8} {'train peak GiB':>14} {'1st step s':>10} "
              f"{'infer img/s':>11} {'infer peak GiB':>14}")
    print(header)
    results = []
    for variant in variants:
        r = train_step_bench(encoder, size, batch, variant, device, steps, inference="compile" not in variant)
        results.append(r)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the variant's model is gone; start the next one from a clean cache
        print(f"{variant:<16} {r['train_img_s']:>11.1f} {r['step_s'] * 1000:>8.0f} {r['train_peak_gib']:>14.2f} "
              f"{r['first_step_s']:>10.1f} {r.get('infer_img_s', float('nan')):>11.1f} "
              f"{r.get('infer_peak_gib', float('nan')):>14.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "encoder": encoder,
                                         "crop": size, "batch": batch, "results": results}, indent=1))


if __name__ == "__main__":
    main()
