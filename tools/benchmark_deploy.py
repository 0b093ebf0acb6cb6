"""Speed with accuracy, side by side, for each way of running a trained model: PyTorch fp32, ONNX Runtime fp32
and ONNX Runtime INT8 (and on a GPU PyTorch bf16 autocast and ONNX Runtime's CUDA provider, when installed).

    python tools/benchmark_deploy.py --checkpoint best.ckpt --data data/synthetic_voc --json deploy.json
    python tools/benchmark_deploy.py --quick     # 64 px, xception_tiny with random weights (run by the tests)

Every runtime runs the same thing: a uint8 RGB batch ``(N, H, W, 3)`` in, labels out, with normalization and the
official resize path inside (:class:`segkit.export.EndToEnd`, exported with ``segkit export --end_to_end
--batch`` and, for INT8, ``--quantize int8``: calibrated on 100 training images chosen by seed 0). Two models:
the ``--checkpoint`` (the demo's, say) and Xception-65 at the paper's width with random weights (its speed;
accuracy needs trained weights). For each: p50/p95 latency of a batch at ``--size`` x ``--size`` (batch 1
and 4), images/s at p50, the peak resident memory of a process that runs only that (CPU; peak GPU memory on a
GPU), and on the validation images (``--data``, a VOC-layout folder) the mIoU and the share of pixels whose
label equals PyTorch fp32's. Each (model, runtime, batch) runs in a fresh process with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from benchmark import process_peak_gib  # tools/, the script's folder

from segkit.data import VOCSegmentation, make_synthetic_voc
from segkit.evaluation.metrics import ConfusionMatrix, segmentation_scores
from segkit.export import EndToEnd, write_end_to_end_file
from segkit.export.quantize import calibration_indices, quantize_int8
from segkit.inference import load_inference_model
from segkit.models import DeepLabV3Plus, fold_batchnorm

RUNTIMES = ("pytorch fp32", "onnxruntime fp32", "onnxruntime int8", "onnxruntime int8 dw-float")
GPU_RUNTIMES = ("pytorch bf16", "onnxruntime cuda fp32")


def build(model_name: str, checkpoint: Path | None) -> tuple[torch.nn.Module, int]:
    """The model (folded, eval) and its class count: the checkpoint's, or a DeepLabV3+ of the encoder
    ``model_name`` (xception65, ...) with random weights."""
    if model_name == "checkpoint":
        model = load_inference_model(checkpoint)
        return model, model.num_classes
    torch.manual_seed(0)
    return fold_batchnorm(DeepLabV3Plus(21, model_name, 16, pretrained=None).eval()), 21


def export_files(model_name: str, checkpoint: Path | None, data: Path, work: Path, calibration: int) -> dict:
    """The end-to-end batched ONNX file of the model in float, in INT8, and in INT8 with the depthwise
    convolutions left float (``--keep_float depthwise``)."""
    model, _ = build(model_name, checkpoint)
    module = EndToEnd(model, (0.5,) * 3, (0.5,) * 3, batched=True)
    files = {kind: work / f"{model_name}_{kind}.onnx" for kind in ("fp32", "int8", "int8 dw-float")}
    write_end_to_end_file(module, files["fp32"], {})
    train = VOCSegmentation(str(data), "train")
    for kind, keep in (("int8", ()), ("int8 dw-float", ("depthwise",))):
        images = (train.load(i)[0][None] for i in calibration_indices(len(train), calibration))
        quantize_int8(files["fp32"], files[kind], images, keep)
    return {k: str(v) for k, v in files.items()}


class Runner:
    """A uint8 batch (N, H, W, 3) -> labels (N, H, W), by one runtime."""

    def __init__(self, runtime: str, model_name: str, checkpoint: Path | None, files: dict, threads: int) -> None:
        self.runtime = runtime
        if runtime.startswith("pytorch"):
            model, _ = build(model_name, checkpoint)
            self.device = "cuda" if runtime.endswith("bf16") else "cpu"
            self.module = EndToEnd(model, (0.5,) * 3, (0.5,) * 3, batched=True).to(self.device).eval()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            providers = ["CUDAExecutionProvider"] if "cuda" in runtime else ["CPUExecutionProvider"]
            path = files[runtime.removeprefix("onnxruntime ").replace("cuda ", "")]
            self.session = ort.InferenceSession(path, options, providers=providers)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.runtime.startswith("pytorch"):
            return self.session.run(None, {"image": batch})[0]
        x = torch.from_numpy(batch).to(self.device)
        with torch.no_grad(), torch.autocast(self.device, torch.bfloat16, enabled=self.runtime.endswith("bf16")):
            labels = self.module(x)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return labels.cpu().numpy()


def worker(spec: dict) -> dict:
    """One (model, runtime, batch): latency, peak memory and, at batch 1, the labels of the validation images."""
    torch.set_num_threads(spec["threads"])
    checkpoint = Path(spec["checkpoint"]) if spec["checkpoint"] else None
    run = Runner(spec["runtime"], spec["model"], checkpoint, spec["files"], spec["threads"])
    val = VOCSegmentation(spec["data"], "val")
    image = val.load(0)[0]
    import cv2

    big = cv2.resize(image, (spec["size"], spec["size"]), interpolation=cv2.INTER_LINEAR)
    batch = np.ascontiguousarray(np.stack([big] * spec["batch"]))
    for _ in range(2):  # warm-up: allocations, kernel choice
        run(batch)
    times = []
    for _ in range(spec["reps"]):
        start = perf_counter()
        run(batch)
        times.append(perf_counter() - start)
    result = {
        "p50_s": float(np.percentile(times, 50)),
        "p95_s": float(np.percentile(times, 95)),
        "peak_gib": peak_gib(),
    }
    if spec["batch"] == 1:
        labels_file = Path(spec["labels"])
        np.savez_compressed(labels_file, *[run(val.load(i)[0][None])[0] for i in range(len(val))])
    return result


def peak_gib() -> float:
    """Peak GPU memory allocated by PyTorch when the GPU was used, else this process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return process_peak_gib()


def accuracy(labels_file: Path, reference_file: Path | None, data: str, num_classes: int) -> dict:
    """mIoU on the validation images, and the share of pixels equal to the reference runtime's labels."""
    val = VOCSegmentation(data, "val")
    ours = np.load(labels_file)
    metric = ConfusionMatrix(num_classes)
    agree = total = 0
    reference = np.load(reference_file) if reference_file else ours
    for i in range(len(val)):
        labels = ours[f"arr_{i}"]
        metric.update(torch.from_numpy(labels.astype(np.int64))[None], torch.from_numpy(val.load(i)[1])[None])
        agree += int((labels == reference[f"arr_{i}"]).sum())
        total += labels.size
    return {"mIoU": segmentation_scores(metric.compute())["mIoU"], "agreement": agree / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="a segkit checkpoint (default with --quick: none, random)")
    p.add_argument("--data", type=Path, help="VOC-layout folder: calibration (train) and accuracy (val) images")
    p.add_argument("--size", type=int, default=513)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration_images", type=int, default=100)
    p.add_argument(
        "--models", nargs="+", default=["checkpoint", "xception65"], help="checkpoint, and encoders with random weights"
    )
    p.add_argument("--quick", action="store_true", help="64 px, 3 repetitions, xception_tiny, a tiny synthetic set")
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_all(args, Path(tmp))


def run_all(args, work: Path) -> None:
    if args.quick:
        args.size, args.reps, args.calibration_images, args.models = 64, 3, 4, ["xception_tiny"]
    if args.data is None:
        args.data = work / "voc"
        make_synthetic_voc(args.data, num_train=12, num_val=6, size_range=(64, 96), seed=0)
    if "checkpoint" in args.models and args.checkpoint is None:
        sys.exit("--checkpoint is needed for the checkpoint model (or --models xception65)")
    runtimes = RUNTIMES + (GPU_RUNTIMES if torch.cuda.is_available() else ())
    print(f"deploy benchmark: torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}", flush=True)
    rows = []
    for model_name in args.models:
        files = export_files(model_name, args.checkpoint, args.data, work, args.calibration_images)
        _, num_classes = build(model_name, args.checkpoint)
        for runtime in runtimes:
            for batch in args.batches:
                labels = work / f"{model_name}_{runtime.replace(' ', '_')}.npz"
                spec = {
                    "model": model_name,
                    "checkpoint": str(args.checkpoint or ""),
                    "runtime": runtime,
                    "batch": batch,
                    "files": files,
                    "threads": args.threads,
                    "data": str(args.data),
                    "size": args.size,
                    "reps": args.reps,
                    "labels": str(labels),
                }
                if args.quick:  # in this process: no start-ups, and no peak (it would be the whole run's)
                    r = {**worker(spec), "peak_gib": None}
                else:
                    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        print(f"  {model_name} {runtime} batch {batch}: failed ({proc.stderr.strip()[-300:]})")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                reference = work / f"{model_name}_pytorch_fp32.npz"
                acc = accuracy(labels, reference if reference.exists() else None, str(args.data), num_classes)
                row = {"model": model_name, "runtime": runtime, "batch": batch, **r, **acc}
                row["images_per_s"] = batch / r["p50_s"]
                peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
                rows.append(row)
                print(
                    f"  {model_name:<10} {runtime:<26} batch {batch}: p50 {r['p50_s'] * 1000:7.1f} ms  "
                    f"p95 {r['p95_s'] * 1000:7.1f} ms  {row['images_per_s']:6.2f} img/s  peak "
                    f"{peak} GiB  mIoU {100 * acc['mIoU']:.2f}  equal to PyTorch fp32 "
                    f"{100 * acc['agreement']:.2f}%",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
