"""segkit's benchmarks in one tool: against its peers (reported as ratios), and its own speed and memory.

    python tools/benchmark.py                        # the full CPU run (docs/benchmarks.md)
    python tools/benchmark.py --quick                # small sizes, a minute on a CPU (run by the tests)
    python tools/benchmark.py --json results.json --sections model metric
    python tools/benchmark.py --device cuda --json results_gpu.json          # on a GPU, every section
    python tools/benchmark.py --sections eval --eval_size 1024 2048          # Cityscapes-size evaluation memory

Sections:
- model: segkit DeepLabV3+ Xception-65 vs segmentation-models-pytorch
  ``DeepLabV3Plus(encoder_name="tu-xception65", decoder_atrous_rates=(6, 12, 18))`` (12, 24, 36 at OS8, as
  segkit and the paper), random weights, forward
  (eval, no_grad) and forward+backward (train, cross-entropy) at 512x512, batch 2, OS16 and OS8, in float32,
  bf16 autocast and channels_last; ratio = segkit time / smp time (below 1: segkit is faster). segkit's
  forward is its inference path (segkit eval: batch norm folded into the convolutions); the forward of the
  module as trained, and (float32) the encoders and the heads alone, are listed as "info" rows.
- data: segkit's training pipeline (OpenCV decode + albumentations) vs a PIL pipeline in the style of
  torchvision's segmentation references (PIL decode, random resize, pad, random crop, flip, to tensor,
  normalize) on the same VOC-size JPEG/PNG files, one process, one thread; ratio = segkit / PIL images/s.
  Also segkit alone on Cityscapes-size PNGs (1024x2048, crop 769): decoding and decoding + pipeline.
- metric: segkit's ConfusionMatrix.update vs torchmetrics' MulticlassJaccardIndex.update on 1024x2048 label
  maps (19 classes, 255 ignored); ratio = segkit / torchmetrics updates/s (the two matrices are compared).
- eval: seconds per image and peak memory of segkit.inference.predict_probs with the folded model (as
  ``segkit eval`` runs it), single scale, the largest scale (1.75) alone and 6 scales + flip: peak GPU memory
  (reset per setting), or on a CPU the process's peak resident memory, each setting in a fresh process
  (--quick on a CPU: in this process, without the peak, which would be the whole run's).
- train: the training step of segkit's task (forward, cross-entropy, backward, SGD with momentum) per
  variant: fp32, bf16 autocast, +cl (channels_last), +compile (torch.compile); images/s, peak memory and
  the first step (cuDNN's algorithm search, compilation) on its own; then inference images/s. At the paper's
  crop 513 and 16 images per device.

Times are medians over repetitions after a warm-up; segkit and its peer are measured alternately so that
drift hits both.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segkit.data import (
    CityscapesSegmentation,
    VOCSegmentation,
    make_synthetic_cityscapes,
    make_synthetic_voc,
    train_transform,
)
from segkit.evaluation.metrics import ConfusionMatrix
from segkit.inference import predict_probs
from segkit.models import DeepLabV3Plus, fold_batchnorm
from segkit.models.decoder import resize

DEVICE = torch.device("cpu")  # --device: where the model, metric and eval sections run


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)  # CUDA calls return before the work is done


def alternate(fns: dict, reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, calling them in turn ``reps`` times after ``warmup`` calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            _sync()
            start = perf_counter()
            fn()
            _sync()
            times[k].append(perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def median_time(fn, reps: int, warmup: int = 1) -> float:
    return alternate({"fn": fn}, reps, warmup)["fn"]


def reset_peak() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)


def peak_gib() -> float:
    """Peak GPU memory since :func:`reset_peak`; on a CPU, the process's peak resident memory."""
    if DEVICE.type == "cuda":
        return torch.cuda.max_memory_allocated(DEVICE) / 2**30
    return process_peak_gib()


def process_peak_gib() -> float:
    """This process's peak resident memory: Linux's VmHWM, which is the program's own, where ru_maxrss keeps the
    parent's peak across fork and exec (a child of a 1.5 GiB parent reports 1.5 GiB)."""
    status = Path("/proc/self/status")
    if status.exists():
        kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return kib / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**30  # bytes on macOS


# model ----------------------------------------------------------------------------------------------------
def build_models(encoder: str, output_stride: int, num_classes: int = 21) -> dict[str, torch.nn.Module]:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    ours = DeepLabV3Plus(num_classes, encoder, output_stride)
    # the same ASPP rates in both: 6/12/18 at OS16, doubled to 12/24/36 at OS8 as the paper does (smp keeps
    # whatever it is given; the cost of a dilated depthwise convolution on a CPU depends on its rate)
    rates = ours.aspp.atrous_rates
    peer = smp.DeepLabV3Plus(
        encoder_name=f"tu-{encoder}",
        encoder_weights=None,
        classes=num_classes,
        encoder_output_stride=output_stride,
        decoder_atrous_rates=rates,
    )
    aspp = [m.dilation[0] for m in peer.decoder.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1][:3]
    if aspp != list(rates):
        raise AssertionError(f"smp's ASPP rates are not {rates}")
    return {"segkit": ours, "smp": peer}


def model_section(encoder: str, size: int, batch: int, reps: int, strides, modes) -> list[dict]:
    rows = []
    x = torch.randn(batch, 3, size, size, device=DEVICE)
    y = torch.randint(0, 21, (batch, size, size), device=DEVICE)
    for os_ in strides:
        models = {k: m.to(DEVICE) for k, m in build_models(encoder, os_).items()}
        for mode in modes:
            fmt = torch.channels_last if mode == "channels_last" else torch.contiguous_format
            autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=mode == "bf16")
            xm = x.contiguous(memory_format=fmt)
            for m in models.values():
                m.to(memory_format=fmt)
            # segkit's inference path (segkit eval): batch norm folded into the convolutions
            folded = fold_batchnorm(models["segkit"]).to(memory_format=fmt)

            def forward(m, autocast=autocast, xm=xm):
                def run():
                    m.eval()
                    with torch.no_grad(), autocast:
                        m(xm)

                return run

            def train_step(m, autocast=autocast, xm=xm):
                def run():
                    m.train()
                    with autocast:
                        loss = F.cross_entropy(m(xm), y)
                    loss.backward()
                    m.zero_grad(set_to_none=True)

                return run

            t = alternate(
                {"segkit": forward(folded), "segkit_plain": forward(models["segkit"]), "smp": forward(models["smp"])},
                reps,
            )
            rows.append(_row(f"OS{os_} {mode} forward", t["segkit"], t["smp"]))
            rows.append(_row(f"OS{os_} {mode} forward, BN not folded", t["segkit_plain"], t["smp"], info=True))
            t = alternate({k: train_step(m) for k, m in models.items()}, reps)
            rows.append(_row(f"OS{os_} {mode} forward+backward", t["segkit"], t["smp"]))
            if mode == "fp32":
                rows += model_parts(models, xm, os_, reps)
    return rows


def _row(case: str, ours: float, peer: float, info: bool = False) -> dict:
    print(f"  model {case:<42} segkit {ours:.3f} s  smp {peer:.3f} s  ratio {ours / peer:.3f}", flush=True)
    return {
        "section": "model",
        "case": case,
        "segkit_s": ours,
        "peer_s": peer,
        "ratio": ours / peer,
        "unit": "s (lower is better)",
        "info": info,
    }


def model_parts(models: dict, x: torch.Tensor, os_: int, reps: int) -> list[dict]:
    """forward+backward of the encoders alone (the same timm Xception-65 in both) and of the heads alone
    (ASPP + decoder + upsampling; segkit's is the paper's, smp's is lighter), on the same inputs."""
    ours, peer = models["segkit"].train(), models["smp"].train()
    with torch.no_grad():
        f_ours, f_peer = ours.encoder(x), peer.encoder(x)
    out, low = (f_ours[k].clone().requires_grad_() for k in ("out", "low"))
    feats = [f.clone().requires_grad_() for f in f_peer]
    size = x.shape[-2:]

    def enc(m, pick):
        def run():
            sum(f.float().sum() for f in pick(m.encoder(x))).backward()
            m.zero_grad(set_to_none=True)

        return run

    def head_ours():
        resize(ours.decoder(ours.aspp(out), low), size).sum().backward()
        ours.zero_grad(set_to_none=True)

    def head_peer():
        peer.segmentation_head(peer.decoder(feats)).sum().backward()
        peer.zero_grad(set_to_none=True)

    t = alternate(
        {
            "enc_segkit": enc(ours, lambda f: (f["out"], f["low"])),
            "enc_smp": enc(peer, lambda f: (f[-1], f[2])),
            "head_segkit": head_ours,
            "head_smp": head_peer,
        },
        reps,
    )
    return [
        _row(f"OS{os_} fp32 encoder forward+backward", t["enc_segkit"], t["enc_smp"], info=True),
        _row(f"OS{os_} fp32 head forward+backward", t["head_segkit"], t["head_smp"], info=True),
    ]


# data -----------------------------------------------------------------------------------------------------
class PILPipeline:
    """torchvision segmentation-references style: PIL decode, resize the shorter side by a random factor,
    pad (image 0, mask 255) to the crop, random crop, horizontal flip, to tensor, normalize."""

    def __init__(self, crop: int, scale_range=(0.5, 2.0), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> None:
        self.crop, self.scale_range, self.mean, self.std = crop, scale_range, mean, std
        self.rng = np.random.default_rng(0)

    def __call__(self, image_path: Path, mask_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.transforms.functional as TF
        from PIL import Image

        image, mask = Image.open(image_path).convert("RGB"), Image.open(mask_path)
        size = int(min(image.size) * self.rng.uniform(*self.scale_range))
        image = TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR)
        mask = TF.resize(mask, size, interpolation=TF.InterpolationMode.NEAREST)
        w, h = image.size
        pad_w, pad_h = max(self.crop - w, 0), max(self.crop - h, 0)
        if pad_w or pad_h:
            image = TF.pad(image, [0, 0, pad_w, pad_h], fill=0)
            mask = TF.pad(mask, [0, 0, pad_w, pad_h], fill=255)
        w, h = image.size
        top, left = int(self.rng.integers(0, h - self.crop + 1)), int(self.rng.integers(0, w - self.crop + 1))
        image, mask = TF.crop(image, top, left, self.crop, self.crop), TF.crop(mask, top, left, self.crop, self.crop)
        if self.rng.random() < 0.5:
            image, mask = TF.hflip(image), TF.hflip(mask)
        x = TF.normalize(TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float), self.mean, self.std)
        return x, torch.from_numpy(np.array(mask, dtype=np.int64))


def data_section(root: Path, crop: int, passes: int) -> list[dict]:
    ours = VOCSegmentation(root, "train", num_classes=5, transform=train_transform(crop))
    peer = PILPipeline(crop)
    files = [(s.image, s.mask) for s in ours.samples]
    n = len(files) * passes

    def run_ours():
        for _ in range(passes):
            for i in range(len(ours)):
                ours[i]

    def run_peer():
        for _ in range(passes):
            for image, mask in files:
                peer(image, mask)

    t = alternate({"segkit": run_ours, "pil": run_peer}, 3)
    ours_rate, peer_rate = n / t["segkit"], n / t["pil"]
    print(
        f"  data crop {crop}: segkit {ours_rate:.1f} img/s  PIL {peer_rate:.1f} img/s  "
        f"ratio {ours_rate / peer_rate:.2f}",
        flush=True,
    )
    return [
        {
            "section": "data",
            "case": f"VOC-size JPEG, crop {crop}, one core",
            "segkit_s": 1 / ours_rate,
            "peer_s": 1 / peer_rate,
            "ratio": ours_rate / peer_rate,
            "unit": "img/s ratio (higher is better)",
        }
    ]


# metric ---------------------------------------------------------------------------------------------------
def metric_section(height: int, reps: int, num_classes: int = 19) -> list[dict]:
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (1, height, 2 * height), generator=g)
    target[:, :, :16] = 255
    preds = torch.where(
        torch.rand(target.shape, generator=g) < 0.8,
        target.clamp(max=num_classes - 1),
        torch.randint(0, num_classes, target.shape, generator=g),
    )
    target, preds = target.to(DEVICE), preds.to(DEVICE)
    ours = ConfusionMatrix(num_classes).to(DEVICE)
    peer = MulticlassJaccardIndex(num_classes, ignore_index=255, average=None, validate_args=False).to(DEVICE)
    t = alternate(
        {"segkit": lambda: ours.update(preds, target), "torchmetrics": lambda: peer.update(preds, target)}, reps
    )
    check = MulticlassConfusionMatrix(num_classes, ignore_index=255).to(DEVICE)
    check.update(preds, target)
    single = ConfusionMatrix(num_classes).to(DEVICE)
    single.update(preds, target)
    if not torch.equal(single.compute(), check.compute()):
        raise AssertionError("segkit's confusion matrix differs from torchmetrics'")
    ratio = t["torchmetrics"] / t["segkit"]
    print(
        f"  metric {height}x{2 * height}: segkit {1000 * t['segkit']:.1f} ms  torchmetrics "
        f"{1000 * t['torchmetrics']:.1f} ms  speed ratio {ratio:.2f}",
        flush=True,
    )
    return [
        {
            "section": "metric",
            "case": f"confusion update, {height}x{2 * height}, {num_classes} classes",
            "segkit_s": t["segkit"],
            "peer_s": t["torchmetrics"],
            "ratio": ratio,
            "unit": "updates/s ratio (higher is better)",
        }
    ]


def decode_rows(dataset, name: str, passes: int) -> list[dict]:
    """segkit alone: images/s of decoding, and of decoding + the training pipeline (info rows)."""

    def decode():
        for _ in range(passes):
            for i in range(len(dataset)):
                dataset.load(i)

    def pipeline():
        for _ in range(passes):
            for i in range(len(dataset)):
                dataset[i]

    t = alternate({"decode": decode, "pipeline": pipeline}, 1, warmup=0)
    n = len(dataset) * passes
    print(
        f"  data {name}: decode {n / t['decode']:.1f} img/s, decode + pipeline {n / t['pipeline']:.1f} img/s",
        flush=True,
    )
    return [
        {
            "section": "data",
            "case": f"{name}, {what}, one core",
            "segkit_s": t[key] / n,
            "peer_s": None,
            "ratio": None,
            "unit": "s per image",
            "info": True,
        }
        for key, what in (("decode", "decode"), ("pipeline", "decode + pipeline"))
    ]


# eval -----------------------------------------------------------------------------------------------------
EVAL_SETTINGS = {
    "single scale": ((1.0,), False),
    "scale 1.75 only": ((1.75,), False),
    "6 scales + flip": ((0.5, 0.75, 1.0, 1.25, 1.5, 1.75), True),
}


def eval_one(encoder: str, size: tuple[int, int], setting: str, reps: int, output_stride: int) -> dict:
    """One setting in this process: seconds per image (median) and the peak memory of a pass."""
    torch.manual_seed(0)
    model = fold_batchnorm(DeepLabV3Plus(21, encoder, output_stride)).to(DEVICE)  # as segkit eval runs it
    x = torch.randn(1, 3, *size, device=DEVICE)
    scales, flip = EVAL_SETTINGS[setting]
    with torch.no_grad():
        predict_probs(model, x, (1.0,))  # warm-up: cuDNN's algorithm choice, the allocator
        reset_peak()
        seconds = median_time(lambda: predict_probs(model, x, scales, flip), reps, warmup=0)
    return {"seconds": seconds, "peak_gib": peak_gib()}


def eval_section(encoder: str, size: tuple[int, int], reps: int, output_stride: int, quick: bool) -> list[dict]:
    """Every setting of :data:`EVAL_SETTINGS`; on a CPU each in a fresh process of this script (its peak resident
    memory is per process), unless ``quick`` (then without the peak). On a GPU in this process (peak reset)."""
    rows = []
    for setting in EVAL_SETTINGS:
        if DEVICE.type == "cuda" or quick:
            r = eval_one(encoder, size, setting, reps, output_stride)
            r["peak_gib"] = r["peak_gib"] if DEVICE.type == "cuda" else None
        else:
            cmd = [
                sys.executable,
                __file__,
                "--eval_one",
                setting,
                "--device",
                str(DEVICE),
                "--reps",
                str(reps),
                "--eval_size",
                *map(str, size),
                "--eval_output_stride",
                str(output_stride),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
        case = f"{setting}, {size[0]}x{size[1]}, OS{output_stride}"
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f} GiB"
        print(f"  eval {case}: {r['seconds']:.3f} s per image, peak {peak}", flush=True)
        rows.append(
            {
                "section": "eval",
                "case": case,
                "segkit_s": r["seconds"],
                "peer_s": None,
                "ratio": None,
                "unit": "s per image",
                "peak_gib": r["peak_gib"],
            }
        )
    return rows


# train ----------------------------------------------------------------------------------------------------
VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+compile", "bf16+cl+compile")


def train_variant(
    encoder: str, size: int, batch: int, variant: str, steps: int, inference: bool = True, num_classes: int = 21
) -> dict:
    """Training step (and inference) speed and peak memory of one variant on :data:`DEVICE`."""
    bf16, channels_last, compile_ = "bf16" in variant, "+cl" in variant, "compile" in variant
    torch.manual_seed(0)
    model = DeepLabV3Plus(num_classes, encoder, 16).to(DEVICE).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    if compile_:
        model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=DEVICE).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch, size, size), device=DEVICE)
    autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    first = median_time(step, 1, warmup=0)  # compilation, cuDNN's algorithm search
    median_time(step, 1)  # one more warm-up step
    reset_peak()
    dt = median_time(step, steps, warmup=0)
    out = {
        "variant": variant,
        "step_s": dt,
        "train_img_s": batch / dt,
        "train_peak_gib": peak_gib(),
        "first_step_s": first,
    }
    if inference:
        model.eval()

        def forward() -> None:
            with torch.no_grad(), autocast:
                model(x)

        reset_peak()
        infer = median_time(forward, steps, warmup=2)
        out |= {"infer_img_s": batch / infer, "infer_peak_gib": peak_gib()}
    return out


def train_section(encoder: str, size: int, batch: int, steps: int, variants) -> list[dict]:
    if DEVICE.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as Lightning's default for fixed-size crops
    rows = []
    for variant in variants:
        r = train_variant(encoder, size, batch, variant, steps, inference="compile" not in variant)
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()  # the variant's model is gone; start the next one from a clean cache
        case = f"{encoder} crop {size} batch {batch} {variant}"
        print(
            f"  train {case}: {r['train_img_s']:.1f} img/s ({1000 * r['step_s']:.0f} ms per step), peak "
            f"{r['train_peak_gib']:.2f} GiB, first step {r['first_step_s']:.1f} s; inference "
            f"{r.get('infer_img_s', float('nan')):.1f} img/s",
            flush=True,
        )
        rows.append(
            {
                "section": "train",
                "case": case,
                "segkit_s": r["step_s"],
                "peer_s": None,
                "ratio": None,
                "unit": "s per training step",
                **r,
            }
        )
    return rows


TARGETS = {  # segkit's speed targets against its peers: (section, what, bound) on the ratio
    "model forward+backward": ("<=", 1.05),
    "model forward": ("<=", 1.0),
    "data": (">=", 1.5),
    "metric": (">=", 1.0),
}


def target_of(row: dict) -> tuple[str, float] | None:
    if row.get("info"):
        return None  # a part or a variant, shown to explain the ratios above it
    if row["section"] == "model":
        return TARGETS["model forward+backward" if row["case"].endswith("forward+backward") else "model forward"]
    return TARGETS.get(row["section"])


SECTIONS = ("model", "data", "metric", "eval", "train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (the tests run this)")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=None,
        help="default: model data metric eval on a CPU, all five on a GPU",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per case (default 3, --quick 1); this VM varies by ~10%% between runs",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="device of the model, metric, eval and train sections")
    parser.add_argument(
        "--eval_size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="eval image size (default 513 513, --quick 96 96)",
    )
    parser.add_argument("--eval_output_stride", type=int, default=16)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=None,
        help="train variants (default: all; --quick: those without compile)",
    )
    parser.add_argument("--eval_one", help=argparse.SUPPRESS)  # one eval setting, in a process of its own
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    q = args.quick
    reps = args.reps or (1 if q else 3)
    encoder = "xception_tiny" if q else "xception65"
    eval_size = tuple(args.eval_size or ((96, 96) if q else (513, 513)))
    if args.eval_one:
        print(json.dumps(eval_one(encoder, eval_size, args.eval_one, reps, args.eval_output_stride)))
        return
    sections = args.sections or (SECTIONS if DEVICE.type == "cuda" else SECTIONS[:4])
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"CPU, {threads} threads"
    print(f"segkit benchmark{' (quick)' if q else ''}: torch {torch.__version__}, {where}", flush=True)
    rows: list[dict] = []
    if "model" in sections:
        rows += model_section(
            "xception65",
            128 if q else 512,
            2,
            reps,
            (16,) if q else (16, 8),
            ("fp32",) if q else ("fp32", "bf16", "channels_last"),
        )
    if "data" in sections:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        with tempfile.TemporaryDirectory() as tmp:
            sizes, crop, n, cs_height, cs_crop = ((96, 128), 96, 4, 64, 96) if q else ((375, 500), 513, 20, 1024, 769)
            make_synthetic_voc(Path(tmp) / "voc", num_train=n, num_val=1, size_range=sizes, seed=0)
            rows += data_section(Path(tmp) / "voc", crop, 1 if q else 2)
            make_synthetic_cityscapes(Path(tmp) / "cs", num_train=max(2, n // 4), num_val=1, height=cs_height, seed=0)
            cs = CityscapesSegmentation(Path(tmp) / "cs", "train", transform=train_transform(cs_crop))
            rows += decode_rows(cs, f"Cityscapes-size PNG ({cs_height}x{2 * cs_height}), crop {cs_crop}", 1 if q else 3)
        torch.set_num_threads(threads)
    if "metric" in sections:
        rows += metric_section(256 if q else 1024, 3 if q else 10)
    if "eval" in sections:
        rows += eval_section(encoder, eval_size, reps, args.eval_output_stride, q)
    if "train" in sections:
        size, batch, steps = (65, 2, 2) if q else (513, 16, 10)
        variants = args.variants or ([v for v in VARIANTS if "compile" not in v] if q else VARIANTS)
        rows += train_section(encoder, size, batch, steps, variants)

    print(f"\n{'section':<7} {'case':<46} {'segkit':>9} {'peer':>9} {'ratio':>7}  target")
    for r in rows:
        target = target_of(r)
        ok = ""
        if target is not None and r["ratio"] is not None:
            met = r["ratio"] <= target[1] if target[0] == "<=" else r["ratio"] >= target[1]
            ok = f"{target[0]} {target[1]:.2f} {'met' if met else 'MISSED'}"
        if q and ok:
            ok = f"{target[0]} {target[1]:.2f} applies to the full sizes"
        peer = f"{r['peer_s']:9.4f}" if r["peer_s"] is not None else f"{'-':>9}"
        ratio = f"{r['ratio']:7.3f}" if r["ratio"] is not None else f"{'-':>7}"
        print(f"{r['section']:<7} {r['case']:<46} {r['segkit_s']:9.4f} {peer} {ratio}  {ok}")
    print(
        "model/eval: seconds; data: seconds per image; metric: seconds per update; train: seconds per step. "
        "ratio: model = segkit/smp time, data and metric = segkit/peer speed."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"torch": torch.__version__, "threads": threads, "device": where, "quick": q, "rows": rows}, indent=1
            )
        )


if __name__ == "__main__":
    main()
