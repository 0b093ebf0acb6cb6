"""Every command's outputs for a softmax model, from this checkout and from another (the tree before a change),
compared file by file: a refactoring must leave them identical.

    git worktree add ../segkit-before HEAD~3
    python tools/compare_outputs.py --baseline_src ../segkit-before --work /tmp/compare

(A second run in the same ``--work`` folder reuses its data set and model.)

It writes the demo's synthetic VOC set (60 validation images), trains the demo's model for 150 steps with this
checkout (a model that predicts several classes), then runs each command below twice, once with each checkout
first on ``PYTHONPATH`` (one process at a time, ``--threads`` threads):

- ``segkit eval`` at scales 0.75 1.0 1.25 with flip, with every output (``--json --confusion --save_predictions``)
  and every analysis option (``--per_image --worst 2 --trimap 2 5 --boundary_iou --calibration --output_dir``);
- ``segkit eval --predictions`` of the first run's prediction files;
- ``segkit predict --confidence`` of six validation images, and with a 6 MB ``--memory_budget`` (tiled, 64 px
  windows);
- ``segkit export --end_to_end --outputs labels probs --verify`` and the logits form;
- ``segkit eval --model_file`` of the end-to-end file.

Compared: standard output (the work folder's paths and timings masked), JSON (paths masked), CSV and .npy files
exactly, PNG files pixel for pixel, JPEG overlays within one grey level of mean difference (the encoder is the
same, so they are identical too unless a library changed), ONNX files by their graphs (without the exporter's
notes on source lines) and their metadata without the file-specific fields. Prints one line per output and
exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run(src: Path, work: Path, out: Path, args: list[str], threads: int) -> str:
    """``segkit ARGS`` with the checkout ``src``, in ``work``; its standard output with paths and times masked."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    args = [a.replace("{out}", str(out)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "segkit", *args], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{src}: segkit {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    text = proc.stdout.replace(str(out), "<out>").replace(str(work), "<work>")
    return re.sub(r"\d+(\.\d+)? ?(s|ms)\b", "<time>", text)


def masked_json(path: Path, roots: list[Path]) -> object:
    text = path.read_text()
    for root in roots:
        text = text.replace(str(root), "<root>")
    return json.loads(text)


def same_file(a: Path, b: Path, roots: list[Path]) -> str | None:
    """None when ``a`` and ``b`` hold the same output; else what differs."""
    suffix = a.suffix.lower()
    if suffix == ".json":
        return None if masked_json(a, roots) == masked_json(b, roots) else "JSON differs"
    if suffix == ".png":
        x, y = np.asarray(Image.open(a)), np.asarray(Image.open(b))
        return None if x.shape == y.shape and np.array_equal(x, y) else f"pixels differ ({(x != y).mean():.4%})"
    if suffix in (".jpg", ".jpeg"):
        x, y = (np.asarray(Image.open(p)).astype(int) for p in (a, b))
        diff = np.abs(x - y).mean() if x.shape == y.shape else float("inf")
        return None if diff < 1 else f"overlay differs by {diff:.2f} grey levels"
    if suffix == ".onnx":
        import onnx

        ga, gb = (onnx.load(str(p)) for p in (a, b))
        meta = [
            {k: v for k, v in masked_json_text(m, roots).items() if k not in ("created", "segkit_version")}
            for m in (ga, gb)
        ]
        for g in (ga, gb):  # the exporter's notes on each node name the Python source lines it came from
            del g.metadata_props[:]
            for node in g.graph.node:
                del node.metadata_props[:]
                node.doc_string = ""
        if ga.graph.SerializeToString() != gb.graph.SerializeToString():
            return "graph differs"
        return None if meta[0] == meta[1] else "metadata differs"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def masked_json_text(model, roots: list[Path]) -> dict:
    entry = next(p.value for p in model.metadata_props if p.key == "segkit")
    for root in roots:
        entry = entry.replace(str(root), "<root>")
    return json.loads(entry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline_src", type=Path, required=True, help="the other segkit checkout")
    parser.add_argument("--work", type=Path, default=Path("compare_outputs"), help="a new folder for everything")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="training steps of the compared model")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for name in ("baseline", "current"):  # the outputs of an earlier run; its data and model are used again
        shutil.rmtree(work / name, ignore_errors=True)
    trees = {"baseline": args.baseline_src.resolve(), "current": REPO}
    data = ["--config", "demo.yaml", "--data.root", str(work / "data")]
    fit = [*data, "--trainer.max_steps", str(args.steps), "--trainer.check_val_every_n_epoch", "4"]
    fit += ["--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(work / "fit")]
    fit += ["--trainer.enable_progress_bar", "false"]
    if not (work / "fit").is_dir():
        run(REPO, work, work, ["fit", *fit], args.threads)
    ckpt = str(next((work / "fit").rglob("last*.ckpt"), None) or next((work / "fit").rglob("*.ckpt")))
    images = sorted((work / "data" / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("synth_val_*.jpg"))[:6]
    (work / "photos").mkdir(exist_ok=True)
    for image in images:
        (work / "photos" / image.name).write_bytes(image.read_bytes())
    tta = ["--scales", "0.75", "1.0", "1.25", "--flip"]
    analysis = ["--per_image", "{out}/per_image.csv", "--worst", "2", "--trimap", "2", "5", "--boundary_iou"]
    analysis += ["--calibration", "--output_dir", "{out}/plots"]
    commands = {
        "eval": ["eval", *data, "--ckpt_path", ckpt, *tta, "--json", "{out}/eval.json", "--confusion", "{out}/cm"]
        + ["--save_predictions", "{out}/preds", *analysis],
        "eval_predictions": ["eval", *data, "--predictions", "{out}/preds", "--json", "{out}/files.json"],
        "predict": ["predict", *data, "--ckpt_path", ckpt, "--input", str(work / "photos"), *tta]
        + ["--output", "{out}/predicted", "--confidence", "--num_workers", "0"],
        "predict_tiled": ["predict", *data, "--ckpt_path", ckpt, "--input", str(work / "photos")]
        + ["--output", "{out}/tiled", "--memory_budget", "6MB", "--window", "64", "--num_workers", "0"],
        "export": ["export", *data, "--ckpt_path", ckpt, "--end_to_end", "--outputs", "labels", "probs"]
        + ["--output", "{out}/model.onnx", "--verify"],
        "export_logits": ["export", *data, "--ckpt_path", ckpt, "--output", "{out}/logits.onnx"],
        "eval_model_file": ["eval", *data, "--model_file", "{out}/model.onnx", "--json", "{out}/file.json"],
    }
    outputs = {name: work / name for name in trees}
    printed: dict[str, dict[str, str]] = {name: {} for name in trees}
    for command, argv in commands.items():
        for name, src in trees.items():
            outputs[name].mkdir(exist_ok=True)
            printed[name][command] = run(src, work, outputs[name], argv, args.threads)
    differences = 0
    for command in commands:
        same = printed["baseline"][command] == printed["current"][command]
        differences += not same
        print(f"{'same' if same else 'DIFFERS':8} stdout of segkit {command}")
    roots = [outputs["baseline"], outputs["current"], work]
    for a in sorted(p for p in outputs["baseline"].rglob("*") if p.is_file()):
        b = outputs["current"] / a.relative_to(outputs["baseline"])
        problem = "missing" if not b.exists() else same_file(a, b, roots)
        differences += problem is not None
        print(f"{'same' if problem is None else 'DIFFERS':8} {a.relative_to(outputs['baseline'])}: {problem or ''}")
    extra = [
        p
        for p in outputs["current"].rglob("*")
        if p.is_file() and not (outputs["baseline"] / p.relative_to(outputs["current"])).exists()
    ]
    for p in extra:
        differences += 1
        print(f"{'DIFFERS':8} {p.relative_to(outputs['current'])}: only in the current checkout")
    print(f"\n{differences} difference(s)")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
