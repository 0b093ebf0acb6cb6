"""`segkit predict` on a folder of images: palette masks and overlays, same-size batching, unreadable files
named, nothing overwritten; each mask checked against the model as trained."""

import cv2
import numpy as np
import pytest
import torch
from helpers import CONFIGS, cli, run_here, trained_module
from PIL import Image

from segkit.commands import predict
from segkit.commands.options import inference_settings
from segkit.data.palette import voc_palette
from segkit.data.transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform
from segkit.inference import InferenceSettings, predict_probs
from segkit.inference.image_files import find_images


def _predict(capsys, *args, cwd):
    return run_here(capsys, "predict", *args, "--config", CONFIGS / "voc.yaml", cwd=cwd)


def test_predict_folder_of_two_sizes_with_a_corrupt_file(random_bn_checkpoint, tmp_path, capsys):
    """Five images of three sizes (one JPEG with bytes after its end, as cameras write them), a truncated JPEG,
    a 0-byte JPEG and a text file: five masks and overlays, the broken ones named, exit 1; each mask equals
    single-image inference of the module as trained."""
    checkpoint = random_bn_checkpoint
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a": (64, 80), "b": (90, 70), "c": (64, 80), "d": (90, 70), "e": (33, 47)}
    for stem, (h, w) in sizes.items():
        cv2.imwrite(
            str(photos / f"{stem}.{'png' if stem == 'b' else 'jpg'}"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        )
    good = (photos / "a.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "c.jpg").write_bytes((photos / "c.jpg").read_bytes() + bytes(range(256)) * 8)  # trailing data
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    proc = _predict(
        capsys,
        "--ckpt_path",
        str(checkpoint),
        "--input",
        str(photos),
        "--output",
        str(out),
        "--batch_size",
        "2",
        "--num_workers",
        "0",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "broken.jpg" in proc.stderr and "wrote 5 of 7 image(s)" in proc.stdout
    assert f"empty image file (0 bytes): {photos / 'empty.jpg'}" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.png" for s in sizes] + [f"{s}_overlay.jpg" for s in sizes]
    )

    model, transform, palette = trained_module(checkpoint), eval_transform(XCEPTION_MEAN, XCEPTION_STD), voc_palette()
    for stem, (h, w) in sizes.items():
        source = next(photos.glob(f"{stem}.*"))
        with Image.open(out / f"{stem}.png") as im:
            assert im.mode == "P" and im.size == (w, h)
            assert np.array(im.getpalette(), np.uint8).reshape(-1, 3)[:21].tolist() == palette[:21].tolist()
            mask = np.array(im)
        with Image.open(out / f"{stem}_overlay.jpg") as im:
            assert im.size == (w, h)
        # the batched, BN-folded prediction equals this image alone through the module as trained
        image = cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2RGB)
        with torch.no_grad():
            alone = model(transform(image=image)["image"][None]).argmax(1)[0].numpy()
        assert (mask == alone).mean() >= 0.999, stem

    # a second run does not replace what the first wrote
    before = (out / "a.png").stat().st_mtime_ns
    from segkit.commands import main  # in this process: the check comes before any prediction

    with pytest.raises(SystemExit) as again:
        main(
            [
                "predict",
                "--config",
                str(CONFIGS / "voc.yaml"),
                "--ckpt_path",
                str(checkpoint),
                "--input",
                str(photos / "*.jpg"),
                "--output",
                str(out),
                "--num_workers",
                "0",
                "--device",
                "cpu",
            ]
        )
    assert "already exist" in str(again.value.code) and "--overwrite" in str(again.value.code)
    assert (out / "a.png").stat().st_mtime_ns == before


def test_predict_multi_scale_flip_window_and_names(random_bn_checkpoint, tmp_path, capsys):
    """The test-time options of segkit eval, through the CLI: the same labels as predict_probs on the module."""
    checkpoint = random_bn_checkpoint

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    image = np.random.default_rng(1).integers(0, 256, (57, 75, 3), dtype=np.uint8)
    cv2.imwrite(str(photos / "sub" / "x.png"), image)
    cv2.imwrite(str(photos / "x.jpg"), image)
    with pytest.raises(ValueError, match="same output files"):
        find_images(str(photos / "**" / "x.*"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_images(str(photos / "missing"))
    out = tmp_path / "out"
    proc = _predict(
        capsys,
        "--ckpt_path",
        str(checkpoint),
        "--input",
        str(photos / "sub" / "*.png"),
        "--output",
        str(out),
        "--scales",
        "0.75",
        "1.0",
        "1.25",
        "--flip",
        "--window",
        "48",
        "--overlap",
        "0.25",
        "--num_workers",
        "0",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    x = eval_transform(XCEPTION_MEAN, XCEPTION_STD)(image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB))["image"][None]
    want = (
        predict_probs(trained_module(checkpoint), x, (0.75, 1.0, 1.25), True, window=48, overlap=0.25)
        .argmax(1)[0]
        .numpy()
    )
    assert (np.array(Image.open(out / "x.png")) == want).mean() >= 0.999
    # the options reach predict_probs as segkit eval passes them (the model above predicts one class here,
    # so the labels alone would not show a lost --window)
    p = predict.parser()
    cfg = p.parse_args(
        cli(
            config=CONFIGS / "voc.yaml",
            ckpt_path="m.ckpt",
            input="x",
            output="y",
            scales=[0.5, 1.0],
            flip=True,
            window=48,
            overlap=0.25,
            pad_to=[513, 600],
        )
    )
    assert inference_settings(p, cfg) == InferenceSettings((0.5, 1.0), True, 48, 0.25, (513, 600))
