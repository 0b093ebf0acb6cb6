"""What ``segkit eval``'s analysis costs: the evaluation loop alone, with per-image scores + trimap + Boundary IoU
+ calibration, and the same plain loop of another segkit checkout (the code before a change).

    python tools/benchmark_analysis.py --checkpoint best.ckpt --data data/synthetic_voc --json analysis.json
    python tools/benchmark_analysis.py --encoder xception65 --baseline_src ../segkit-before --json a.json
    python tools/benchmark_analysis.py --quick      # xception_tiny with random weights, 6 small images (tests)

Each measurement runs in a fresh process (one at a time, ``--threads`` threads) that builds the model and the
validation set, runs two warm-up images, then times one pass over every image with the function ``segkit eval``
runs (:func:`segkit.evaluation.evaluate`); the analysis pass also includes its end-of-split work (summing, the
per-image CSV). Settings alternate (baseline plain, plain, analysis) for ``--reps`` rounds so that drift hits
each; reported: the median seconds per image and the analysis / plain ratio. The plots and worst-image panels,
written once per evaluation, are timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# run in a fresh process with the segkit under test first on sys.path: times one evaluation pass
CHILD = r"""
import json, sys, tempfile
from pathlib import Path
from time import perf_counter
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
import segkit.evaluation as ev
from segkit.data import VOCSegmentation
from segkit.data.transforms import eval_transform
from segkit.inference import load_inference_model
from segkit.models import DeepLabV3Plus, fold_batchnorm

if args["checkpoint"]:
    model = load_inference_model(args["checkpoint"])
else:
    torch.manual_seed(0)
    model = fold_batchnorm(DeepLabV3Plus(num_classes=args["classes"], encoder=args["encoder"], pretrained=None).eval())
k = model.num_classes
mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
if args["checkpoint"]:  # the normalization it was trained with, when it records it
    from segkit.io.torch_files import read_checkpoint
    recorded = read_checkpoint(args["checkpoint"]).get("segkit_data") or {}
    mean, std = recorded.get("mean", mean), recorded.get("std", std)
dataset = VOCSegmentation(args["data"], "val", num_classes=k, transform=eval_transform(mean, std))
if hasattr(ev, "CheckpointPredictor"):
    predictor = ev.CheckpointPredictor(model)
else:  # a checkout from before predictors were objects
    predictor = ev.checkpoint_predictor(model)
def run(data, analysis=None):
    if hasattr(ev, "head_counts"):  # one loop for every head, its options keyword-only
        from segkit.head import Head
        return ev.evaluate(predictor, data, head=Head.of(model), analysis=analysis)
    if analysis is None:
        return ev.evaluate(predictor, data, k)
    return ev.evaluate(predictor, data, k, analysis=analysis)
run(torch.utils.data.Subset(dataset, range(min(2, len(dataset)))))  # warm-up
analysis = None
if args["mode"] == "analysis":
    try:
        from segkit.evaluation.analysis import EvalAnalysis
    except ImportError:  # a checkout with the analysis beside the evaluation
        from segkit.analysis import EvalAnalysis
    analysis = EvalAnalysis(k, per_image=True, trimap_widths=(2, 5, 10, 20, 40), trimap_band="void",
                            boundary_ratio=0.02, calibration_bins=15)
names = [str(i) for i in range(k)]
start = perf_counter()
confmat = run(dataset, analysis)
if analysis is not None:
    results = analysis.compute(names)
    analysis.per_image.write_csv(Path(tempfile.mkdtemp()) / "rows.csv", names)
seconds = perf_counter() - start
report = {"seconds": seconds, "images": len(dataset), "pixels": int(confmat.sum())}
if args["mode"] == "analysis" and args["plots"]:
    from segkit.evaluation.analysis.report import write_plots
    from segkit.evaluation.metrics import segmentation_scores
    start = perf_counter()
    write_plots(Path(tempfile.mkdtemp()), confmat, segmentation_scores(confmat), names, results)
    report["plot_seconds"] = perf_counter() - start
print("RESULT " + json.dumps(report))
"""


def measure(src: Path, mode: str, args, plots: bool = False) -> dict:
    settings = {
        "mode": mode,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "encoder": args.encoder,
        "classes": args.classes,
        "data": str(args.data_root),
        "threads": args.threads,
        "plots": plots,
    }
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True, env=env, cwd=src
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} run with {src} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[0][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a segkit checkpoint (default: --encoder, random weights)")
    parser.add_argument("--encoder", default="xception65", help="without --checkpoint: this encoder, random weights")
    parser.add_argument("--classes", type=int, default=21, help="without --checkpoint: classes")
    parser.add_argument("--data", type=Path, help="a VOC-layout folder (default: a synthetic one, VOC image sizes)")
    parser.add_argument("--images", type=int, default=20, help="synthetic validation images")
    parser.add_argument("--baseline_src", type=Path, help="another segkit checkout: its plain loop is timed too")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="xception_tiny, 6 images of 64-96 px, 1 round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.encoder, args.images, args.reps = "xception_tiny", 6, 1
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            from segkit.data import make_synthetic_voc

            sizes = (64, 96) if args.quick else (375, 500)  # VOC's images are at most 500 px
            args.data = make_synthetic_voc(Path(tmp) / "voc", num_train=1, num_val=args.images, size_range=sizes)
        args.data_root = args.data if (args.data / "JPEGImages").is_dir() else args.data / "VOCdevkit" / "VOC2012"
        runs: dict[str, list[dict]] = {"plain": [], "analysis": []}
        if args.baseline_src:
            runs["baseline plain"] = []
        for rep in range(args.reps):
            if args.baseline_src:
                runs["baseline plain"].append(measure(args.baseline_src.resolve(), "plain", args))
            runs["plain"].append(measure(here, "plain", args))
            runs["analysis"].append(measure(here, "analysis", args, plots=rep == 0))
    rows = {}
    for name, results in runs.items():
        per_image = statistics.median(r["seconds"] / r["images"] for r in results)
        rows[name] = {"seconds_per_image": per_image, "runs": [r["seconds"] for r in results]}
    rows["analysis"]["plot_seconds"] = runs["analysis"][0]["plot_seconds"]
    ratio = rows["analysis"]["seconds_per_image"] / rows["plain"]["seconds_per_image"]
    summary = {
        "model": str(args.checkpoint) if args.checkpoint else f"{args.encoder} (random weights)",
        "images": runs["plain"][0]["images"],
        "pixels": runs["plain"][0]["pixels"],
        "threads": args.threads,
        "reps": args.reps,
        "rows": rows,
        "analysis_over_plain": ratio,
    }
    if args.baseline_src:
        summary["plain_over_baseline"] = (
            rows["plain"]["seconds_per_image"] / rows["baseline plain"]["seconds_per_image"]
        )
    for name, row in rows.items():
        runs_text = ", ".join(f"{s:.2f}" for s in row["runs"])
        print(f"{name:<16} {1000 * row['seconds_per_image']:8.1f} ms/image   runs {runs_text} s")
    print(f"analysis / plain: {ratio:.3f}   plots (once per evaluation): {rows['analysis']['plot_seconds']:.2f} s")
    if args.baseline_src:
        print(f"plain / baseline plain: {summary['plain_over_baseline']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
