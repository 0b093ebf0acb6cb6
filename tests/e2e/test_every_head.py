"""Every feature for every head: each test runs for a softmax model, a binary sigmoid model at its tuned threshold
and a multi-label model at its tuned thresholds (the session's tiny models, conftest.HeadRun), and compares
what a command writes with an independent computation: the model's own probabilities (predict_probs) and the
head's decision (Segmenter), or the same command run another way (whole and band by band, checkpoint and
exported file)."""

import csv
import json

import numpy as np
import pytest
from helpers import cli, run_here, segkit_here
from PIL import Image

from segkit import Segmenter
from segkit.inference import predict_probs
from segkit.inference.outputs import confidence_maps, output_paths


def _images(run, count: int = 1) -> list:
    return sorted((run.data / "images").rglob("*.jpg"))[:count]


def _probabilities(segmenter: Segmenter, image) -> np.ndarray:
    """The (K, H, W) class probabilities of ``image`` as inference computes them (one scale)."""
    picture = np.asarray(Image.open(image).convert("RGB"))
    x = segmenter.transform(image=picture)["image"][None]
    return predict_probs(segmenter.model, x)[0]


def _predict(capsys, run, image, output, *extra):
    return segkit_here(capsys, *cli("predict", *run.args, ckpt_path=run.model, input=image, output=output), *extra)


def _masks(run, segmenter: Segmenter, folder, stem: str) -> np.ndarray:
    """What predict wrote for ``stem``: class indices (H, W), or a multi-label model's (K, H, W) booleans."""
    if run.head == "multilabel":
        return np.stack([np.asarray(Image.open(folder / f"{stem}_{n}.png")) > 0 for n in segmenter.class_names])
    return np.asarray(Image.open(folder / f"{stem}.png"))


def _budget_between(run, sizes: list, window: int, confidence: bool) -> str:
    """A memory budget (bytes) below what every image of ``sizes`` needs whole and above what each needs in
    ``window`` px tiles, from the model's own footprint (:class:`~segkit.inference.memory.ModelFootprint`)."""
    from segkit.inference.memory import ModelFootprint

    footprint = ModelFootprint.measure(Segmenter(run.model).model)
    whole = min(footprint.whole_image_bytes(h, w, (1.0,), False, window) for h, w in sizes)
    tiled = max(footprint.tiled_bytes(h, w, window, (1.0,), False, confidence) for h, w in sizes)
    assert tiled < whole, (tiled, whole)
    return str((tiled + whole) // 2)


def test_predict_writes_the_heads_decision_and_its_confidence(head_run, tmp_path, capsys):
    """--confidence: the top probability and the entropy of a single-label head's probabilities (a binary head's
    are (1 - p, p)), each class's probability for a multi-label head; the masks are Segmenter's decision."""
    (image,) = _images(head_run)
    _predict(capsys, head_run, image, tmp_path, "--confidence", "--num_workers", "0")
    segmenter = Segmenter(head_run.model, batch_size=1)
    assert np.array_equal(_masks(head_run, segmenter, tmp_path, image.stem), segmenter(image))
    probs = _probabilities(segmenter, image)
    names = segmenter.class_names if head_run.head == "multilabel" else None
    files = output_paths(tmp_path, image, confidence=True, class_names=names)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f.name for f in files)
    if names is not None:
        maps, want = files[len(names) + 1 :], [(p.clamp(0, 1) * 65535).round().numpy() for p in probs]
    else:
        assert probs.shape[0] == 2 or head_run.head == "multiclass"
        maps, want = files[2:], confidence_maps(probs)
    for file, values in zip(maps, want, strict=True):
        got = np.asarray(Image.open(file)).astype(np.int64)
        assert got.shape == values.shape and np.abs(got - values.astype(np.int64)).max() <= 1, file.name


def test_an_image_above_the_budget_is_predicted_band_by_band_as_the_window_predicts_it(head_run, tmp_path, capsys):
    """A 240 x 160 mosaic of the set's images does not fit the budget whole (about 4.3 MB in 48 px windows):
    predict tiles it (about 2.3 MB) and writes the files of the in-memory prediction in the same windows."""
    tiles = [Image.open(p).convert("RGB").resize((80, 80)) for p in _images(head_run, 6)]
    mosaic = Image.new("RGB", (240, 160))
    for i, tile in enumerate(tiles):
        mosaic.paste(tile, (80 * (i % 3), 80 * (i // 3)))
    big = tmp_path / "big.png"
    mosaic.save(big)
    common = ("--window", "48", "--confidence", "--num_workers", "0")
    budget = _budget_between(head_run, [(160, 240)], 48, confidence=True)
    tiled = run_here(
        capsys, *cli("predict", *head_run.args, ckpt_path=head_run.model, input=big, output=tmp_path / "tiled"),
        *common, "--memory_budget", budget,
    )  # fmt: skip
    assert tiled.returncode == 0 and "band by band" in tiled.stdout, tiled.stdout[-1500:] + tiled.stderr[-1500:]
    _predict(capsys, head_run, big, tmp_path / "whole", *common)
    names = Segmenter(head_run.model).class_names if head_run.head == "multilabel" else None
    for a, b in zip(*(output_paths(tmp_path / k, big, True, names) for k in ("tiled", "whole")), strict=True):
        x, y = np.asarray(Image.open(a)).astype(np.int64), np.asarray(Image.open(b)).astype(np.int64)
        assert x.shape == y.shape, a.name
        if a.suffix == ".jpg":  # the same blend, JPEG-encoded
            assert np.abs(x - y).mean() < 1, a.name
        elif "confidence" in a.name or "entropy" in a.name:  # probabilities summed over windows in another order
            assert np.abs(x - y).max() <= 2, a.name
        else:
            assert (x == y).mean() >= 0.9999, a.name


def test_a_video_gives_the_overlay_and_the_heads_masks_per_frame(head_run, tmp_path, capsys):
    """A folder of 4 frames with --fps: the overlay video and each frame's masks (a multi-label model: one per
    class), equal to Segmenter's decision on the frame alone."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, path in enumerate(_images(head_run, 4)):
        Image.open(path).convert("RGB").resize((72, 64)).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    _predict(capsys, head_run, frames, out, "--fps", "4", "--masks", "--batch_size", "1")
    assert (out / "frames_overlay.mp4").stat().st_size > 0
    segmenter = Segmenter(head_run.model, batch_size=1)
    for i in range(4):
        assert np.array_equal(
            _masks(head_run, segmenter, out / "frames_masks", f"f{i}"), segmenter(frames / f"f{i}.png")
        )


def test_eval_scores_the_checkpoint_its_exported_file_and_band_by_band_alike(head_run, head_export, tmp_path, capsys):
    """eval of the checkpoint, of the checkpoint band by band (every image of 64 to 80 px above the budget whole,
    below it in 32 px windows) and of its end-to-end export (--model_file, also through Segmenter): the same
    scores; a sigmoid head records its thresholds."""
    evaluate = cli("eval", *head_run.args, device="cpu")
    whole = segkit_here(capsys, *evaluate, *cli(ckpt_path=head_run.model, json=tmp_path / "whole.json"))
    scores = json.loads((tmp_path / "whole.json").read_text())
    assert f"{100 * scores['mIoU']:7.2f}" in whole
    if head_run.head != "multiclass":
        assert scores["thresholds"] == head_run.tuned_json["tuned"]["thresholds"]
    sizes = [Image.open(p).size[::-1] for p in _images(head_run, 100)]
    budget = _budget_between(head_run, sizes, 32, confidence=False)
    tiled = cli(ckpt_path=head_run.model, json=tmp_path / "tiled.json", memory_budget=budget, window=32)
    assert "band by band" in segkit_here(capsys, *evaluate, *tiled)
    banded = json.loads((tmp_path / "tiled.json").read_text())
    # windows see less context than the whole image: their labels may differ at a few pixels
    assert banded["mIoU"] == pytest.approx(scores["mIoU"], abs=0.05)

    model_file = head_export(head_run, "end_to_end")
    segkit_here(capsys, *evaluate, *cli(model_file=model_file, json=tmp_path / "file.json"))
    exported = json.loads((tmp_path / "file.json").read_text())
    assert exported["mIoU"] == pytest.approx(scores["mIoU"], abs=1e-3) and exported["form"] == "end_to_end"
    (image,) = _images(head_run)
    assert (Segmenter(model_file)(image) == Segmenter(head_run.model)(image)).mean() >= 0.9999


def test_eval_analysis_options_per_head(head_run, tmp_path, capsys):
    """Every analysis option, for every head: single-label heads on their class map (the binary one as its two
    classes), a multi-label head per class. The per-image CSV's counts sum to the split's per-class IoU in the
    JSON; the worst images' panels and the plots are written (no confusion matrix for a multi-label head)."""
    out = tmp_path / "analysis"
    argv = cli("eval", *head_run.args, ckpt_path=head_run.model, device="cpu", per_image=tmp_path / "rows.csv")
    argv += cli(trimap=[2, 5], boundary_iou=True, calibration=True, json=tmp_path / "s.json")
    segkit_here(capsys, *argv, *cli(worst=2, output_dir=out))
    result = json.loads((tmp_path / "s.json").read_text())
    names = list(result["per_class_iou"])
    with open(tmp_path / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["num_images"]
    for name, iou in result["per_class_iou"].items():
        intersection = sum(int(row[f"intersection/{name}"]) for row in rows)
        union = sum(int(row[f"union/{name}"]) for row in rows)
        assert (iou is None and union == 0) or iou == pytest.approx(intersection / union, abs=1e-12)
    assert set(result["boundary_iou"]["per_class"]) == set(names)
    assert set(result["trimap"]["mIoU"]) == {"2", "5"}
    assert 0 <= result["calibration"]["ECE"] <= 1 and result["calibration"]["pixels"] > 0
    assert len(list((out / "worst").glob("*.png"))) == 2
    plots = {p.name for p in out.glob("*.png")}
    expected = {"per_class_iou.png", "trimap.png", "reliability.png"}
    if head_run.head == "multilabel":
        assert plots == expected
        assert set(result["trimap"]["per_class"]) == set(result["calibration"]["per_class"]) == set(names)
        mean = np.nanmean([np.nan if v is None else v for v in result["boundary_iou"]["per_class"].values()])
        assert result["boundary_iou"]["mean"] == pytest.approx(mean)
    else:
        assert plots == expected | {"confusion_matrix.png"}
