"""Evaluation tests: multi-scale/flip/sliding-window inference and `segkit eval` against `segkit validate`."""
import json
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from segkit.data import VOCDataModule
from segkit.inference import predict_probs, sliding_logits
from segkit.models import DeepLabV3Plus
from segkit.task import SegmentationTask

REPO = Path(__file__).resolve().parents[1]


def _model():
    torch.manual_seed(0)
    return DeepLabV3Plus(4, "xception_tiny", 16, decoder_channels=32).eval()


def test_single_scale_equals_plain_forward():
    model, x = _model(), torch.randn(2, 3, 61, 83)
    with torch.no_grad():
        want = model(x).softmax(1)
    torch.testing.assert_close(predict_probs(model, x, [1.0]), want)


def test_flip_on_a_symmetric_model_changes_nothing():
    model = _model()
    with torch.no_grad():  # left-right symmetric kernels make the network flip-equivariant
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)
    x = torch.randn(1, 3, 65, 65)  # odd sizes at every stride keep strided sampling symmetric
    plain = predict_probs(model, x, [1.0], flip=False)
    torch.testing.assert_close(predict_probs(model, x, [1.0], flip=True), plain, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(predict_probs(_model(), x, [1.0], flip=True), predict_probs(_model(), x, [1.0]))


def test_multi_scale_is_the_mean_of_single_scales():
    model, x = _model(), torch.randn(1, 3, 64, 64)
    a, b = predict_probs(model, x, [0.5]), predict_probs(model, x, [1.5])
    torch.testing.assert_close(predict_probs(model, x, [0.5, 1.5]), (a + b) / 2)


def test_sliding_window():
    model, x = _model(), torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        whole = model(x)
        torch.testing.assert_close(sliding_logits(model, x, window=80), whole)  # window larger than the image
        pointwise = nn.Conv2d(3, 4, 1)  # translation-equivariant: windows must reassemble the whole image
        torch.testing.assert_close(sliding_logits(pointwise, x, window=32, overlap=0.25), pointwise(x))


def test_eval_single_scale_equals_validate(tiny_voc, tmp_path):
    L.seed_everything(0)
    dm = VOCDataModule(root=str(tiny_voc), batch_size=2, val_batch_size=1, crop_size=48, num_workers=0)
    task = SegmentationTask(num_classes=21, encoder="xception_tiny", decoder_channels=32, lr=0.05)
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                        enable_checkpointing=False)
    trainer.fit(task, dm)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    validated = trainer.validate(task, dm, verbose=False)[0]["val/mIoU"]

    out_json, confusion = tmp_path / "scores.json", tmp_path / "cm"
    proc = subprocess.run(
        [sys.executable, "-m", "segkit.cli", "eval", "--config", str(REPO / "configs/voc.yaml"), "--data.root",
         str(tiny_voc), "--data.num_workers", "0", "--ckpt_path", str(ckpt), "--json", str(out_json),
         "--confusion", str(confusion), "--save_predictions", str(tmp_path / "preds"), "--device", "cpu"],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(out_json.read_text())
    assert scores["mIoU"] == pytest.approx(validated, abs=1e-6)
    assert scores["num_images"] == 5 and scores["scales"] == [1.0] and scores["flip"] is False
    assert set(scores) >= {"mIoU", "per_class_iou", "pixel_accuracy", "mean_accuracy", "fwIoU", "num_images",
                           "output_stride", "checkpoint"}
    assert None in scores["per_class_iou"].values()  # classes absent from ground truth and prediction
    cm = np.load(f"{confusion}.npy")
    assert cm.shape == (21, 21) and cm.dtype == np.int64 and (tmp_path / "cm.png").is_file()
    assert len(list((tmp_path / "preds").glob("*_overlay.jpg"))) == 5


def _checkpoint(tiny_voc, tmp_path):
    """A briefly trained small model (it predicts several classes, so the scores are not trivial)."""
    L.seed_everything(0)
    task = SegmentationTask(num_classes=21, encoder="xception_tiny", decoder_channels=32, lr=0.05)
    trainer = L.Trainer(max_steps=15, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                        enable_checkpointing=False)
    trainer.fit(task, VOCDataModule(root=str(tiny_voc), batch_size=4, crop_size=48, num_workers=0))
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def _eval(*args, cwd):
    return subprocess.run([sys.executable, "-m", "segkit.cli", "eval", *args, "--data.num_workers", "0"],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def cityscapes_predictions(tmp_path):
    from PIL import Image

    from segkit.data import make_synthetic_cityscapes

    root = make_synthetic_cityscapes(tmp_path / "cs", num_train=1, num_val=5, height=48, seed=3)
    gts = sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds"
    preds.mkdir()
    files = []
    for gt in gts:
        label = np.array(Image.open(gt))
        pred = label.copy()
        noise = rng.random(label.shape) < 0.3  # 30% random label ids, ignored ids (void) among them
        pred[noise] = rng.integers(0, 34, int(noise.sum()))
        files.append(preds / gt.name.replace("_gtFine_labelIds", "_labelIds"))
        Image.fromarray(pred, mode="L").save(files[-1])
    return root, gts, preds, files


def test_prediction_files_match_the_official_cityscapes_scorer(cityscapes_predictions, tmp_path):
    np.in1d = getattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel())  # numpy 2.4
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    root, gts, preds, files = cityscapes_predictions
    official.args.quiet = True
    official.args.evalInstLevelScore = False
    official.args.JSONOutput = False
    want = official.evaluateImgLists([str(f) for f in files], [str(g) for g in gts], official.args)

    proc = _eval("--config", str(REPO / "configs/cityscapes.yaml"), "--data.root", str(root),
                 "--predictions", str(preds), "--json", str(tmp_path / "s.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "s.json").read_text())
    for name, iou in want["classScores"].items():
        if name in got["per_class_iou"]:
            if np.isnan(iou):
                assert got["per_class_iou"][name] is None, name
            else:
                assert got["per_class_iou"][name] == pytest.approx(iou, abs=1e-6), name
    assert got["mIoU"] == pytest.approx(want["averageScoreClasses"], abs=1e-6)
    assert got["num_images"] == 5


def test_missing_and_extra_prediction_files_are_named(cityscapes_predictions, tmp_path):
    root, _, preds, files = cityscapes_predictions
    files[0].unlink()
    (preds / "munich_000001_000002_labelIds.png").write_bytes(files[1].read_bytes())
    proc = _eval("--config", str(REPO / "configs/cityscapes.yaml"), "--data.root", str(root),
                 "--predictions", str(preds), cwd=tmp_path)
    assert proc.returncode != 0
    assert files[0].name.replace("_labelIds.png", "") in proc.stderr
    assert "munich_000001_000002_labelIds.png" in proc.stderr


def test_one_and_two_processes_give_the_same_confusion_matrix(tiny_voc, tmp_path):
    """5 validation images on 2 gloo processes (3 + 2, nothing padded): the same matrix as one process."""
    ckpt = _checkpoint(tiny_voc, tmp_path)
    common = ["-m", "segkit.cli", "eval", "--config", str(REPO / "configs/voc.yaml"), "--data.root", str(tiny_voc),
              "--data.num_workers", "0", "--ckpt_path", str(ckpt), "--device", "cpu"]
    one = subprocess.run([sys.executable, *common, "--confusion", str(tmp_path / "one")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                          *common, "--confusion", str(tmp_path / "two"), "--json", str(tmp_path / "two.json")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert np.array_equal(a, b)
    assert a.sum() > 0
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2


def test_validate_on_two_processes_equals_one(tiny_voc, tmp_path):
    """`segkit validate` with DDP on 2 CPU processes (gloo) over the odd-sized split: the same val/mIoU exactly."""
    ckpt = _checkpoint(tiny_voc, tmp_path)

    def validate(devices):
        proc = subprocess.run(
            [sys.executable, "-m", "segkit.cli", "validate", "--config", str(REPO / "configs/voc.yaml"),
             "--data.root", str(tiny_voc), "--data.num_workers", "0", "--model.encoder", "xception_tiny",
             "--model.decoder_channels", "32", "--model.pretrained", "null", "--ckpt_path", str(ckpt),
             "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.strategy",
             "ddp" if devices > 1 else "auto", "--trainer.default_root_dir", str(tmp_path / f"d{devices}")],
            capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        table = proc.stdout[proc.stdout.index("val: per-class IoU"):proc.stdout.index("val/mean_acc")]
        return re.findall(r"^\s*val/(?:mIoU|pixel_acc)\s+(\d\.\d+)\s*$", proc.stdout, re.M), table

    scores1, table1 = validate(1)
    scores2, table2 = validate(2)
    assert len(scores1) == 2 and scores1 == scores2  # val/mIoU and val/pixel_acc, full precision
    assert float(scores1[0]) > 0
    assert table1 == table2  # per-class IoU and accuracy, and the labelled-pixel count: every pixel once


def test_eval_benchmark_runs():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "bench_eval.py"), "--quick"],
                         capture_output=True, text=True, check=True).stdout
    assert "6 scales + flip" in out and "largest scale alone" in out


def test_gpu_check_runs_on_the_cpu():
    """tools/gpu_check.py at tiny sizes: parity, stride switch, step benchmarks and short fits all pass."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--quick"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "timm parity xception65 OS8" in proc.stdout and "segkit fit cityscapes.yaml" in proc.stdout
