"""`segkit eval`'s analysis options end to end: the per-image CSV against the confusion matrix, the worst images,
the JSON's numbers against segkit.evaluation.analysis run by hand on the same predictions, prediction folders,
one process against two, and `segkit predict --confidence`."""

import csv
import json

import numpy as np
import pytest
import torch
from helpers import CONFIGS, one_thread, run_here, segkit_here, segkit_torchrun
from PIL import Image

from segkit.data import VOCDataModule
from segkit.data.transforms import eval_transform
from segkit.evaluation.analysis import BoundaryIoU, CalibrationError, TrimapScores
from segkit.inference import load_inference_model, predict_probs

ANALYSIS = ["--trimap", "1", "3", "8", "--boundary_iou", "--worst", "2"]


def voc_args(tiny_voc):
    return ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, "--data.num_workers", "0", "--device", "cpu"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def analysed(tiny_voc, checkpoint, tmp_path_factory):
    """One eval of the checkpoint with every analysis option (scales and flip: probabilities averaged)."""
    from segkit.commands import main

    out = tmp_path_factory.mktemp("analysed")
    argv = [*voc_args(tiny_voc), "--ckpt_path", checkpoint, "--scales", "0.75", "1.0", "--flip", *ANALYSIS]
    argv += ["--calibration", "--calibration_bins", "10", "--per_image", out / "per_image.csv"]
    argv += ["--output_dir", out / "report", "--json", out / "scores.json", "--confusion", out / "cm"]
    argv += ["--save_predictions", out / "preds"]
    with pytest.raises(SystemExit) as done, one_thread():  # the arithmetic of the two-process test's workers
        main(["eval", *map(str, argv)])
    assert done.value.code == 0
    return out


def test_per_image_rows_sum_to_the_confusion_matrix(analysed):
    rows = read_csv(analysed / "per_image.csv")
    cm = np.load(analysed / "cm.npy")
    names = VOCDataModule.class_names
    assert len(rows) == 5 and [r["image"] for r in rows] == sorted(r["image"] for r in rows)
    intersection = np.array([[int(r[f"intersection/{n}"]) for n in names] for r in rows])
    union = np.array([[int(r[f"union/{n}"]) for n in names] for r in rows])
    assert np.array_equal(intersection.sum(0), np.diag(cm))  # integers: exactly
    assert np.array_equal(union.sum(0), cm.sum(0) + cm.sum(1) - np.diag(cm))
    for r, i, u in zip(rows, intersection, union):
        assert int(r["labelled_pixels"]) > 0
        assert float(r["mIoU"]) == pytest.approx((i[u > 0] / u[u > 0]).mean(), abs=1e-6)
    scores = json.loads((analysed / "scores.json").read_text())
    worst = sorted(rows, key=lambda r: float(r["mIoU"]))[:2]
    assert [w["image"] for w in scores["worst"]] == [r["image"] for r in worst]
    for w in scores["worst"]:
        panel = Image.open(w["panel"])
        assert panel.size[0] > 800 and w["panel"].startswith(str(analysed / "report" / "worst"))


def test_the_json_holds_what_segkit_analysis_measures_on_the_same_probabilities(analysed, tiny_voc, checkpoint):
    model = load_inference_model(checkpoint, 21)
    dm = VOCDataModule(root=str(tiny_voc))
    dataset = dm.split_dataset("val")
    transform = eval_transform(dm.mean, dm.std)
    trimap, boundary, calibration = TrimapScores(21, [1, 3, 8], "void"), BoundaryIoU(21), CalibrationError(21, 10)
    for i in range(len(dataset)):
        image, truth = dataset.load(i)
        with one_thread():  # the fixture's arithmetic
            probs = predict_probs(model, transform(image=image)["image"][None], scales=(0.75, 1.0), flip=True)[0]
        pred = probs.argmax(0).numpy().astype(np.uint8)
        trimap.update(pred, truth)
        boundary.update(pred, truth)
        calibration.update(probs, torch.from_numpy(truth))
    scores = json.loads((analysed / "scores.json").read_text())
    assert scores["trimap"]["band"] == "void" and scores["trimap"]["mIoU"] == pytest.approx(trimap.compute()["mIoU"])
    assert scores["trimap"]["pixels"]["1"] < scores["trimap"]["pixels"]["3"] < scores["trimap"]["pixels"]["8"]
    assert scores["boundary_iou"]["mean"] == pytest.approx(boundary.compute()["mean"])
    assert scores["calibration"]["ECE"] == pytest.approx(calibration.compute()["ECE"], abs=1e-9)
    assert scores["calibration"]["NLL"] == pytest.approx(calibration.compute()["NLL"], rel=1e-9)
    plots = {p.name for p in (analysed / "report").glob("*.png")}
    assert plots == {"confusion_matrix.png", "per_class_iou.png", "trimap.png", "reliability.png"}


def test_prediction_files_give_the_checkpoints_analysis(analysed, tiny_voc, tmp_path, capsys):
    argv = [*voc_args(tiny_voc), "--predictions", analysed / "preds", *ANALYSIS]
    argv += [
        "--per_image",
        tmp_path / "new" / "rows.csv",
        "--output_dir",
        tmp_path / "report",
        "--json",
        tmp_path / "s.json",
    ]
    out = segkit_here(capsys, "eval", *argv)
    assert "trimap mIoU (band around the void outlines of the ground truth)" in out
    want, got = json.loads((analysed / "scores.json").read_text()), json.loads((tmp_path / "s.json").read_text())
    assert got["trimap"] == want["trimap"] and got["boundary_iou"] == want["boundary_iou"]
    assert [w["image"] for w in got["worst"]] == [w["image"] for w in want["worst"]]
    assert read_csv(tmp_path / "new" / "rows.csv") == read_csv(analysed / "per_image.csv")  # its folder made


def test_cityscapes_prediction_files_use_the_class_boundary_band(tmp_path, capsys):
    from segkit.data import make_synthetic_cityscapes

    root = make_synthetic_cityscapes(tmp_path / "cs", num_train=1, num_val=2, height=48, seed=3)
    preds = tmp_path / "preds"
    preds.mkdir()
    for gt in sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        Image.open(gt).save(preds / gt.name.replace("_gtFine_labelIds", "_labelIds"))  # perfect predictions
    argv = ["--config", CONFIGS / "cityscapes.yaml", "--data.root", root, "--data.num_workers", "0"]
    out = segkit_here(
        capsys, "eval", *argv, "--predictions", preds, "--trimap", "2", "--boundary_iou", "--json", tmp_path / "s.json"
    )
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["trimap"]["band"] == "boundaries" and "class boundaries of the ground truth" in out
    assert scores["trimap"]["mIoU"]["2"] == 1.0 and scores["boundary_iou"]["mean"] == 1.0
    assert scores["trimap"]["pixels"]["2"] > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--worst", "2"], "--worst needs --output_dir"),
        (["--predictions", "p", "--calibration"], "--calibration needs class probabilities"),
        (["--trimap", "0", "2"], "--trimap widths must be positive"),
        (["--trimap", "2", "--trimap_band", "edges"], "--trimap_band must be one of void, boundaries"),
        (["--boundary_iou", "--boundary_ratio", "2"], "--boundary_ratio must be in (0, 1)"),
    ],
)
def test_analysis_option_errors_are_one_line(tiny_voc, checkpoint, tmp_path, capsys, extra, message):
    source = [] if "--predictions" in extra else ["--ckpt_path", checkpoint]
    proc = run_here(capsys, "eval", *voc_args(tiny_voc), *source, *extra, cwd=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_a_used_output_dir_is_refused(tiny_voc, checkpoint, tmp_path, capsys):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "mine.txt").write_text("keep")
    proc = run_here(
        capsys,
        "eval",
        *voc_args(tiny_voc),
        "--ckpt_path",
        checkpoint,
        "--output_dir",
        tmp_path / "report",
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "is not empty" in proc.stderr
    assert (tmp_path / "report" / "mine.txt").read_text() == "keep"


def test_a_file_without_probabilities_cannot_be_calibrated(tiny_voc, end_to_end_onnx, tmp_path, capsys):
    proc = run_here(capsys, "eval", *voc_args(tiny_voc), "--model_file", end_to_end_onnx, "--calibration", cwd=tmp_path)
    assert proc.returncode == 1 and "no class probabilities: export it with --outputs labels probs" in proc.stderr


def test_predict_writes_confidence_and_entropy_maps(tiny_voc, checkpoint, tmp_path, capsys):
    images = sorted((tiny_voc / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in images:
        (folder / f.name).write_bytes(f.read_bytes())
    args = ["--config", CONFIGS / "voc.yaml", "--ckpt_path", checkpoint, "--input", folder, "--device", "cpu"]
    segkit_here(capsys, "predict", *args, "--output", tmp_path / "out", "--confidence", "--flip", "--num_workers", "0")
    model = load_inference_model(checkpoint, 21)
    dm = VOCDataModule(root=str(tiny_voc))
    from segkit.data.base import read_image

    for f in images:
        probs = predict_probs(model, eval_transform(dm.mean, dm.std)(image=read_image(f))["image"][None], flip=True)[0]
        confidence = np.array(Image.open(tmp_path / "out" / f"{f.stem}_confidence.png"))
        entropy = np.array(Image.open(tmp_path / "out" / f"{f.stem}_entropy.png"))
        assert confidence.dtype == np.uint16 and confidence.shape == probs.shape[1:]
        want_top = probs.max(0).values.numpy()
        want_entropy = -(probs * probs.clamp(min=1e-30).log()).sum(0).numpy() / np.log(21)
        assert np.abs(confidence / 65535 - want_top).max() < 2e-5
        assert np.abs(entropy / 65535 - want_entropy).max() < 2e-5
        labels = np.array(Image.open(tmp_path / "out" / f"{f.stem}.png"))
        assert np.array_equal(labels, probs.argmax(0).numpy())


@pytest.mark.slow
def test_one_and_two_processes_give_the_same_analysis(tiny_voc, checkpoint, analysed, tmp_path):
    """5 images on 2 gloo processes (3 + 2): the same CSV, worst images, trimap, Boundary IoU and calibration."""
    argv = [*voc_args(tiny_voc), "--ckpt_path", checkpoint, "--scales", "0.75", "1.0", "--flip", *ANALYSIS]
    argv += ["--calibration", "--calibration_bins", "10", "--per_image", tmp_path / "rows.csv"]
    argv += ["--output_dir", tmp_path / "report", "--json", tmp_path / "s.json"]
    two = segkit_torchrun("eval", *argv, port=29519, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    want, got = json.loads((analysed / "scores.json").read_text()), json.loads((tmp_path / "s.json").read_text())
    assert got["processes"] == 2
    assert read_csv(tmp_path / "rows.csv") == read_csv(analysed / "per_image.csv")
    assert [w["image"] for w in got["worst"]] == [w["image"] for w in want["worst"]]
    assert got["trimap"] == want["trimap"] and got["boundary_iou"] == want["boundary_iou"]
    assert got["calibration"]["reliability"]["count"] == want["calibration"]["reliability"]["count"]
    # the probabilities are summed in another order (per process, then across): float32's last bits differ
    assert got["calibration"]["ECE"] == pytest.approx(want["calibration"]["ECE"], abs=1e-6)
    assert got["calibration"]["NLL"] == pytest.approx(want["calibration"]["NLL"], rel=1e-6)


def write_ade20k(root, num=3):
    """ADEChallengeData2016 with ``num`` validation images: three classes in vertical bands, 0 (unlabelled)
    in a corner."""
    base = root / "ADEChallengeData2016"
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(num):
            (base / "images" / split).mkdir(parents=True, exist_ok=True)
            (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
            raw = np.full((40, 48), 3, np.uint8)
            raw[:, : 12 + 4 * i] = 1
            raw[:, 30:] = 150
            raw[:5, :5] = 0
            Image.fromarray(np.full((40, 48, 3), 100 + i, np.uint8)).save(
                base / "images" / split / f"{prefix}_{i:08d}.jpg"
            )
            Image.fromarray(raw).save(base / "annotations" / split / f"{prefix}_{i:08d}.png")
    return root


@pytest.mark.parametrize("data", ["ade20k", "folder", "cityscapes"])
def test_every_data_set_takes_the_analysis(data, tmp_path, capsys):
    """Prediction files that are the ground truth shifted 2 px right: per-image rows sum to the matrix, the band
    is around class boundaries, and Boundary IoU falls further than mIoU."""
    from segkit.data import make_synthetic_cityscapes
    from segkit.data.synthetic import make_synthetic_folder

    if data == "ade20k":
        argv = ["--config", CONFIGS / "ade20k.yaml", "--data.root", write_ade20k(tmp_path)]
    elif data == "folder":
        argv = [
            "--config",
            CONFIGS / "demo_folder.yaml",
            "--data.root",
            make_synthetic_folder(tmp_path / "f", num_images=20),
        ]
    else:
        root = make_synthetic_cityscapes(tmp_path / "cs", num_train=1, num_val=3, height=48, seed=3)
        argv = ["--config", CONFIGS / "cityscapes.yaml", "--data.root", root]
    argv += ["--data.num_workers", "0"]
    from segkit.commands.options import config_datamodule, data_config_parser

    parser = data_config_parser("t", "t")
    dm = config_datamodule(parser, parser.parse_args([str(a) for a in argv]))
    dm.prepare_data()
    dataset = dm.split_dataset("val")
    for i, name in enumerate(dataset.ids):
        truth = dataset.load(i)[1]
        pred = np.roll(np.where(truth == 255, 0, truth), 2, axis=1).astype(np.uint8)
        dm.prediction_files.write(tmp_path / "preds", name, pred)
    argv += ["--predictions", tmp_path / "preds", "--per_image", tmp_path / "rows.csv", "--confusion", tmp_path / "cm"]
    argv += ["--trimap", "2", "4", "--boundary_iou", "--boundary_ratio", "0.05", "--json", tmp_path / "s.json"]
    segkit_here(capsys, "eval", *argv)
    scores = json.loads((tmp_path / "s.json").read_text())
    rows, cm = read_csv(tmp_path / "rows.csv"), np.load(tmp_path / "cm.npy")
    assert len(rows) == len(dataset)
    intersection = sum(np.array([int(r[f"intersection/{n}"]) for n in dm.class_names]) for r in rows)
    assert np.array_equal(intersection, np.diag(cm))
    assert scores["trimap"]["band"] == "boundaries" and scores["trimap"]["pixels"]["2"] > 0
    assert scores["boundary_iou"]["mean"] < scores["mIoU"] < 1


def test_sliding_windows_and_an_exported_file_with_probabilities(tiny_voc, checkpoint, tmp_path, capsys):
    """--window: the probabilities of predict_probs(window=...); an end-to-end ONNX file with a probs output:
    calibrated as the checkpoint it was exported from."""
    common = [*voc_args(tiny_voc), "--calibration", "--boundary_iou"]
    segkit_here(capsys, "eval", *common, "--ckpt_path", checkpoint, "--window", "40", "--json", tmp_path / "w.json")
    model, dm = load_inference_model(checkpoint, 21), VOCDataModule(root=str(tiny_voc))
    dataset, calibration = dm.split_dataset("val"), CalibrationError(21)
    for i in range(len(dataset)):
        image, truth = dataset.load(i)
        x = eval_transform(dm.mean, dm.std)(image=image)["image"][None]
        calibration.update(predict_probs(model, x, window=40)[0], torch.from_numpy(truth))
    windowed = json.loads((tmp_path / "w.json").read_text())
    assert windowed["window"] == 40
    assert windowed["calibration"]["ECE"] == pytest.approx(calibration.compute()["ECE"], abs=1e-9)

    onnx = tmp_path / "model.onnx"
    export = [
        "--config",
        CONFIGS / "voc.yaml",
        "--ckpt_path",
        checkpoint,
        "--end_to_end",
        "--outputs",
        "labels",
        "probs",
    ]
    segkit_here(capsys, "export", *export, "--output", onnx)
    segkit_here(capsys, "eval", *common, "--model_file", onnx, "--json", tmp_path / "f.json")
    segkit_here(capsys, "eval", *common, "--ckpt_path", checkpoint, "--json", tmp_path / "c.json")
    from_file, from_ckpt = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("f", "c"))
    assert from_file["calibration"]["ECE"] == pytest.approx(from_ckpt["calibration"]["ECE"], abs=1e-5)
    assert from_file["calibration"]["NLL"] == pytest.approx(from_ckpt["calibration"]["NLL"], rel=1e-4)
    assert from_file["boundary_iou"]["mean"] == pytest.approx(from_ckpt["boundary_iou"]["mean"], abs=1e-3)
