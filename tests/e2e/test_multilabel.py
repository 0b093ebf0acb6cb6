"""Overlapping labels (mask_mode: multilabel): class folders, per-class ignore, the losses, per-class binary
counts against torchmetrics, threshold tuning against a recount, eval on 1 and 2 processes, predict and
Segmenter, and the demo."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_thread, run_here, segkit_here, segkit_torchrun
from PIL import Image
from torchmetrics.classification import MultilabelJaccardIndex

from segkit.data import FolderDataModule
from segkit.evaluation.metrics import MultilabelCounts, multilabel_scores
from segkit.evaluation.thresholds import EDGES, ThresholdHistograms, best_thresholds
from segkit.head import Head
from segkit.training.losses import SegmentationLoss

CLASSES = ["building", "road", "flooded"]


def _write(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)


def _set(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _write(root / "images" / f"a{i}.png", rng.integers(0, 255, (20, 24, 3)))
        for name in CLASSES:
            _write(root / "masks" / name / f"a{i}.png", rng.integers(0, 2, (20, 24)) * 255)
    return root


def _dm(root: Path, **kwargs) -> FolderDataModule:
    return FolderDataModule(
        str(root),
        CLASSES,
        "images",
        "masks",
        mask_mode="multilabel",
        batch_size=2,
        crop_size=16,
        num_workers=0,
        **kwargs,
    )


def test_class_folders_read_as_one_mask_per_class_with_per_class_ignore(tmp_path):
    root = _set(tmp_path)
    _write(root / "masks" / "road" / "a1.png", np.full((20, 24), 1))  # 0/1 masks read too
    flooded = np.zeros((20, 24))
    flooded[:5] = 255
    flooded[5:10] = 128  # not labelled for "flooded"
    _write(root / "masks" / "flooded" / "a1.png", flooded)
    dm = _dm(root, ignore_index=128)
    dm.prepare_data()
    dataset = dm.split_dataset("train")
    index = dataset.ids.index("a1")
    mask = dataset.load(index)[1]
    assert mask.shape == (20, 24, 3) and (mask[..., 1] == 1).all()
    assert (mask[:5, :, 2] == 1).all() and (mask[5:10, :, 2] == 255).all() and (mask[10:, :, 2] == 0).all()
    building = np.asarray(Image.open(root / "masks" / "building" / "a1.png")) > 127
    assert np.array_equal(mask[..., 0] == 1, building)
    assert dataset[index]["mask"].shape == (3, 20, 24)  # (K, H, W), as the model's outputs
    hist = dataset.mask_histogram(mask)
    assert hist[1] == 480 and hist[2] == 120 and hist[255] == 120


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", r"image without a mask of class 'flooded': .*a2\.png \(no .*masks/flooded/a2\.png\)"),
        ("empty", r"class folder .*masks/road holds no masks"),
        ("folder", r"class folder not found: .*masks/flooded \(mask_mode: multilabel reads one folder"),
        ("values", r"mask .*road/a0\.png holds values \[7\] that are neither 0 \(absent\) nor 1 or above 127"),
    ],
)
def test_bad_class_masks_fail_in_one_line_before_training(tmp_path, damage, message):
    root = _set(tmp_path)
    if damage == "missing":
        (root / "masks" / "flooded" / "a2.png").unlink()
    if damage == "empty":
        for f in (root / "masks" / "road").iterdir():
            f.unlink()
    if damage == "folder":
        for f in (root / "masks" / "flooded").iterdir():
            f.unlink()
        (root / "masks" / "flooded").rmdir()
    if damage == "values":
        _write(root / "masks" / "road" / "a0.png", np.full((20, 24), 7))
    dm = _dm(root)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        dm.prepare_data()
        dm.split_dataset("train").load(0)
    assert "\n" not in str(e.value).split("; and")[0]


def test_counts_equal_torchmetrics_multilabel_jaccard():
    torch.manual_seed(0)
    preds = torch.rand(3, 4, 17, 19) > 0.5
    target = torch.randint(0, 2, (3, 4, 17, 19))
    target[0, 2, :5] = 255
    metric = MultilabelCounts(4)
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    ours = multilabel_scores(metric.compute())["per_class_iou"]
    reference = MultilabelJaccardIndex(4, average=None, ignore_index=255)
    theirs = reference(preds.float(), target)
    assert torch.allclose(ours.float(), theirs, atol=1e-6)
    counts = metric.compute()
    assert int(counts[2].sum()) == 3 * 17 * 19 - 5 * 19  # ignored pixels of class 2 not counted


def test_losses_ignore_per_class_and_bce_matches_pytorch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 3, 8, 8))
    target[:, 1, :3] = 255
    for name in ("binary_cross_entropy", "dice", "focal", "lovasz", "jaccard", "tversky"):
        loss = SegmentationLoss({name: 1.0}, 3, multilabel=True)(logits, target)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and not grad[:, 1, :3].any(), name
    loss = SegmentationLoss({"binary_cross_entropy": 1.0}, 3, multilabel=True)(logits, target)
    keep = target != 255
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], target[keep].float())
    assert torch.allclose(loss, want, atol=1e-6)
    with pytest.raises(ValueError, match="overlapping \\(multilabel\\) masks train with binary_cross_entropy"):
        SegmentationLoss({"cross_entropy": 1.0}, 3, multilabel=True)


def test_tuned_thresholds_are_those_of_highest_recounted_iou():
    torch.manual_seed(1)
    target = torch.randint(0, 2, (2, 40, 40))
    probs = (target * 0.3 + torch.rand(2, 40, 40) * 0.7).clamp(0, 0.999)
    target[1, :4] = 255
    hist = ThresholdHistograms(2)
    hist.update(probs, target)
    thresholds, ious = best_thresholds(*hist.compute())
    for k in range(2):
        labelled = target[k] != 255

        def iou(t: float, k=k, labelled=labelled) -> float:
            pred, truth = probs[k][labelled] > t, target[k][labelled] == 1
            return float((pred & truth).sum().double() / (pred | truth).sum())

        assert ious[k] == pytest.approx(iou(thresholds[k]), abs=1e-9)
        assert all(iou(t / 100) <= ious[k] + 1e-9 for t in range(1, 100))


def test_tuned_ious_are_those_of_deciding_at_the_thresholds_on_the_bin_edges():
    """Probabilities that sit exactly on the thresholds (and one float32 either side): each class's IoU that the
    tuning reports is exactly that of the multi-label head's decisions at the thresholds it chose."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor(EDGES, dtype=torch.float32)
    probs = edges[torch.randint(0, len(EDGES), (3, 60, 80), generator=gen)]
    step = torch.randint(-1, 2, probs.shape, generator=gen)
    probs = torch.where(step < 0, probs.nextafter(torch.zeros(())), probs)
    probs = torch.where(step > 0, probs.nextafter(torch.ones(())), probs)
    target = (torch.rand(probs.shape, generator=gen) < probs).to(torch.uint8)
    target[1, :6] = 255
    hist = ThresholdHistograms(3)
    hist.update(probs, target)
    thresholds, ious = best_thresholds(*hist.compute())
    counts = MultilabelCounts(3)
    counts.update(Head("multilabel", 3, thresholds).decide(probs[None]), target[None])
    assert multilabel_scores(counts.compute())["per_class_iou"].tolist() == ious


def test_eval_tunes_thresholds_into_a_new_checkpoint_that_predict_uses(multilabel_run, capsys, tmp_path):
    """The session's multi-label model, tuned by ``segkit eval --tune_thresholds`` (conftest.HeadRun): the new
    checkpoint's eval recounts the tuned IoU, and predict writes its decisions."""
    run, args = multilabel_run, multilabel_run.args
    found = run.tuned_json["tuned"]
    assert run.tuned.is_file() and "written with the model to" in run.tuned_out
    assert found["checkpoint"].endswith("tuned.ckpt") and set(found["thresholds"]) == set(CLASSES)
    evaluate = ("eval", *args, "--ckpt_path", run.checkpoint, "--device", "cpu")
    again = run_here(capsys, *evaluate, "--tune_thresholds", run.tuned)
    assert again.returncode != 0 and "exists: segkit writes a new checkpoint and replaces nothing" in again.stderr

    segkit_here(capsys, "eval", *args, "--ckpt_path", run.tuned, "--device", "cpu", "--json", tmp_path / "t.json")
    rescored = json.loads((tmp_path / "t.json").read_text())
    assert rescored["thresholds"] == found["thresholds"]
    assert rescored["mIoU"] == found["mIoU"]  # the tuned IoU, recounted: the same decisions, pixel for pixel

    image = sorted((run.data / "images").iterdir())[0]
    segkit_here(capsys, "predict", *args, "--ckpt_path", run.tuned, "--input", image, "--output", tmp_path / "pred")
    from segkit import Segmenter

    decided = Segmenter(run.tuned)(image)
    assert decided.shape[0] == 3 and decided.dtype == bool
    for k, name in enumerate(CLASSES):
        written = np.asarray(Image.open(tmp_path / "pred" / f"{image.stem}_{name}.png")) > 0
        assert np.array_equal(written, decided[k])
    assert (tmp_path / "pred" / f"{image.stem}_overlay.jpg").is_file()


def test_predict_tiles_an_image_above_the_budget_as_the_sliding_window_does(multilabel_run, capsys, tmp_path):
    """A 900 x 700 mosaic of the set's images does not fit a 40 MB budget whole: predict says so and tiles it;
    its class masks and overlay equal the in-memory --window prediction's."""
    args = multilabel_run.args
    tiles = [
        Image.open(p).convert("RGB").resize((100, 100)) for p in sorted((multilabel_run.data / "images").iterdir())
    ]
    big = tmp_path / "big.png"
    mosaic = Image.new("RGB", (900, 700))
    for i in range(63):
        mosaic.paste(tiles[i % len(tiles)], (100 * (i % 9), 100 * (i // 9)))
    mosaic.save(big)
    tuned = multilabel_run.tuned  # thresholds at which the 12-step model finds each class somewhere
    common = ("predict", *args, "--ckpt_path", tuned, "--input", big, "--window", "128")
    tiled = run_here(capsys, *common, "--output", tmp_path / "tiled", "--memory_budget", "40MB")
    assert tiled.returncode == 0 and "band by band" in tiled.stdout, tiled.stdout[-1500:] + tiled.stderr[-1500:]
    segkit_here(capsys, *common, "--output", tmp_path / "whole")
    shares = []
    for name in CLASSES:
        a, b = (np.asarray(Image.open(tmp_path / kind / f"big_{name}.png")) for kind in ("tiled", "whole"))
        assert a.shape == (700, 900) and (a == b).mean() >= 0.9999, name
        shares.append((a > 0).mean())
    assert any(0.001 < share < 0.999 for share in shares), shares  # the comparison sees both values
    a, b = (np.asarray(Image.open(tmp_path / kind / "big_overlay.jpg")).astype(int) for kind in ("tiled", "whole"))
    assert a.shape == b.shape and np.abs(a - b).mean() < 2  # the same blend, JPEG-encoded by OpenCV and by PIL


@pytest.mark.slow
def test_one_and_two_processes_give_the_same_multilabel_scores(multilabel_run, capsys, tmp_path):
    args, ckpt = multilabel_run.args, multilabel_run.checkpoint
    common = ("eval", *args, "--data.num_workers", "0", "--ckpt_path", ckpt, "--device", "cpu")
    with one_thread():  # one process, this one, with the arithmetic of the two
        segkit_here(capsys, *common, "--json", tmp_path / "one.json")
    two = segkit_torchrun(*common, "--json", tmp_path / "two.json", port=29531, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["per_class_iou"] == two["per_class_iou"] and one["num_images"] == two["num_images"]


@pytest.mark.slow
def test_multilabel_demo_learns_overlapping_classes(tmp_path, monkeypatch, capsys):
    """demo_multilabel.yaml (about 2 minutes on 2 CPU cores): every class, flooded roads included, at an IoU of
    0.75 or more (0.84-0.87 measured)."""
    monkeypatch.chdir(tmp_path)
    segkit_here(capsys, "data", "synthetic", "--kind", "multilabel", "--root", "data/synthetic_multilabel")
    out = segkit_here(capsys, "data", "check", "--config", "demo_multilabel.yaml")
    assert "no problems found" in out and "class weights" not in out
    out = segkit_here(capsys, "fit", "--config", "demo_multilabel.yaml", "--trainer.enable_progress_bar", "false")
    ckpt = re.search(r"Best checkpoint \(val/mIoU = [\d.]+\): (\S+)", out).group(1)
    step = re.search(r"-step(\d+)-", ckpt).group(1)
    table = out[out.index(f"per-class IoU after step {step}") :]
    for name in CLASSES:
        assert float(re.search(rf"{name} +([\d.]+)", table).group(1)) >= 75.0, table[:500]
