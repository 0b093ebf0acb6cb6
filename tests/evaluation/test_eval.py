"""`segkit eval`: scores against `segkit validate` and the official Cityscapes scorer, prediction files as the
DataModule declares them, one process against two."""

import json
import re

import lightning as L
import numpy as np
import pytest
from helpers import CONFIGS, one_thread, run_here, segkit_here, segkit_torchrun
from PIL import Image

from segkit.commands import main
from segkit.data import VOCDataModule, read_label_png
from segkit.training.task import SegmentationTask


def _eval(capsys, *args, cwd):
    return run_here(capsys, "eval", *args, "--data.num_workers", "0", cwd=cwd)


def test_eval_single_scale_equals_validate(tiny_voc, checkpoint, tmp_path, capsys):
    task = SegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu", pretrained=None)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm = VOCDataModule(root=str(tiny_voc), batch_size=2, val_batch_size=1, num_workers=0)
    validated = trainer.validate(task, dm, verbose=False)[0]["val/mIoU"]

    out_json, confusion, preds = tmp_path / "scores.json", tmp_path / "cm", tmp_path / "preds"
    proc = _eval(
        capsys,
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--ckpt_path",
        checkpoint,
        "--json",
        out_json,
        "--confusion",
        confusion,
        "--save_predictions",
        preds,
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(out_json.read_text())
    assert scores["mIoU"] == pytest.approx(validated, abs=1e-6)
    assert scores["num_images"] == 5 and scores["scales"] == [1.0] and scores["flip"] is False
    assert set(scores) >= {
        "mIoU",
        "per_class_iou",
        "pixel_accuracy",
        "mean_accuracy",
        "fwIoU",
        "num_images",
        "output_stride",
        "checkpoint",
    }
    assert None in scores["per_class_iou"].values()  # classes absent from ground truth and prediction
    assert re.search(rf"^val/mIoU\s+{100 * scores['mIoU']:.2f}$", proc.stdout, re.M)  # the printed table
    cm = np.load(f"{confusion}.npy")
    assert cm.shape == (21, 21) and cm.dtype == np.int64 and (tmp_path / "cm.png").is_file()
    # VOC's prediction files: <name>.png holding class indices (grayscale), and an overlay; scored again, the
    # files give the model's confusion matrix
    names = [p.stem for p in sorted(preds.glob("*.png"))]
    assert len(names) == 5 and len(list(preds.glob("*_overlay.jpg"))) == 5
    assert all(Image.open(preds / f"{n}.png").mode == "L" for n in names)
    assert all(read_label_png(preds / f"{n}.png").max() < 21 for n in names)
    again = _eval(
        capsys,
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--predictions",
        preds,
        "--confusion",
        tmp_path / "again",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "again.npy"), cm)


@pytest.fixture
def cityscapes_predictions(tmp_path):
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

    with pytest.raises(SystemExit) as done:  # in this process: the command itself, without a start-up
        main(
            [
                "eval",
                "--config",
                str(CONFIGS / "cityscapes.yaml"),
                "--data.root",
                str(root),
                "--predictions",
                str(preds),
                "--json",
                str(tmp_path / "s.json"),
                "--data.num_workers",
                "0",
            ]
        )
    assert done.value.code == 0
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
    with pytest.raises(SystemExit) as error:  # one line, exit status 1
        main(
            [
                "eval",
                "--config",
                str(CONFIGS / "cityscapes.yaml"),
                "--data.root",
                str(root),
                "--predictions",
                str(preds),
                "--data.num_workers",
                "0",
            ]
        )
    message = str(error.value.code)
    assert message.startswith("segkit eval: 1 images have no prediction") and "\n" not in message
    assert files[0].name.replace("_labelIds.png", "") in message
    assert "munich_000001_000002_labelIds.png" in message


@pytest.mark.slow
def test_one_and_two_processes_give_the_same_confusion_matrix(tiny_voc, checkpoint, tmp_path, capsys):
    """5 validation images on 2 gloo processes (3 + 2, nothing padded): the same matrix as one process."""
    common = [
        "eval",
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--data.num_workers",
        "0",
        "--ckpt_path",
        checkpoint,
        "--device",
        "cpu",
    ]
    with one_thread():  # one process, this one, with the arithmetic of the two
        segkit_here(capsys, *common, "--confusion", tmp_path / "one")
    two = segkit_torchrun(
        *common, "--confusion", tmp_path / "two", "--json", tmp_path / "two.json", port=29517, cwd=tmp_path
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert np.array_equal(a, b)
    assert a.sum() > 0
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2
