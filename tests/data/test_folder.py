"""Data sets of your own (segkit.data.folder, pairing, masks): each mask mode, list files and folders, recursive
pairing, label_map, reduce_zero_label, val_fraction, the ADE20K layout, and every error naming its file."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit.data import ADE20K_CLASSES, ADE20KDataModule, FolderDataModule, PairingError
from segkit.data.check import check

PALETTE = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]


def _image(path: Path, h=20, w=24, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, fmt)


def _mask(path: Path, values: np.ndarray, mode=None, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(values) if mode is None else Image.fromarray(values, mode)
    if palette is not None:
        im.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
    im.save(path)


def _labels(h=20, w=24, k=3, seed=0):
    return np.random.default_rng(seed).integers(0, k, (h, w)).astype(np.uint8)


def _dm(root, classes=("a", "b", "c"), **kw):
    kw = {
        "train_images": "images/train",
        "train_masks": "masks/train",
        "val_images": "images/val",
        "val_masks": "masks/val",
        "batch_size": 2,
        "crop_size": 16,
        "num_workers": 0,
        **kw,
    }
    return FolderDataModule(str(root), list(classes), **kw)


def _tree(root, names=("x", "sub/y", "sub/deeper/z"), val=("v",), masks=None):
    for split, split_names in (("train", names), ("val", val)):
        for i, name in enumerate(split_names):
            _image(root / "images" / split / f"{name}.jpg")
            labels = _labels(seed=i) if masks is None else masks(i)
            _mask(root / "masks" / split / f"{name}.png", labels)


def test_index_masks_pair_recursively_by_relative_path(tmp_path):
    _tree(tmp_path)
    dm = _dm(tmp_path)
    dm.prepare_data()
    train = dm.make_split("train")
    assert train.ids == ["sub/deeper/z", "sub/y", "x"]  # sorted relative paths without extension
    image, mask = train.load(1)
    assert image.shape == (20, 24, 3) and np.array_equal(mask, _labels(seed=1))


def test_16_bit_and_palette_index_masks_read_as_indices(tmp_path):
    values = _labels(k=3)
    _mask(tmp_path / "m16.png", values.astype(np.uint16))  # a 16-bit grayscale PNG
    _mask(tmp_path / "mp.png", values, mode="P", palette=np.full((256, 3), 7))  # colours that say nothing
    dm = _dm(tmp_path)
    assert Image.open(tmp_path / "m16.png").mode.startswith("I")
    for name in ("m16.png", "mp.png"):
        raw = dm.decoder.read(tmp_path / name)
        assert np.array_equal(dm.decoder.decode(raw, tmp_path / name), values), name


def test_a_value_that_is_not_a_class_names_the_file_and_the_values(tmp_path):
    _tree(tmp_path, masks=lambda i: np.where(_labels(seed=i) == 2, 7, _labels(seed=i)).astype(np.uint8))
    dm = _dm(tmp_path)
    with pytest.raises(ValueError) as e:
        dm.make_split("train").load(0)
    message = str(e.value)
    assert f"mask {tmp_path / 'masks/train/sub/deeper/z.png'} holds values 7 (" in message
    assert "the classes are 0-2, ignored: [255]; map other values with data.label_map" in message


def test_label_map_and_reduce_zero_label(tmp_path):
    raw = np.array([[10, 20, 30, 40]], np.uint8)
    _mask(tmp_path / "m.png", raw)
    mapped = _dm(tmp_path, label_map={10: 0, 20: 2, 30: 255})
    assert mapped.decoder.decode(mapped.decoder.read(tmp_path / "m.png"), "m").tolist() == [[0, 2, 255, 255]]
    reduced = _dm(tmp_path, classes=("a", "b"), reduce_zero_label=True)
    assert reduced.decoder.decode(np.array([[0, 1, 2, 255]], np.uint8), "m").tolist() == [[255, 0, 1, 255]]
    with pytest.raises(ValueError, match="holds values 3 "):
        reduced.decoder.decode(np.array([[0, 3]], np.uint8), "m")


def test_rgb_masks_map_colours_through_the_palette_and_name_unknown_colours(tmp_path):
    labels = _labels(k=3)
    rgb = np.asarray(PALETTE, np.uint8)[labels]
    rgb[0, :3] = (255, 255, 255)  # ignored
    _mask(tmp_path / "ok.png", rgb)
    dm = _dm(tmp_path, mask_mode="rgb", palette=PALETTE, ignore_colors=[[255, 255, 255]])
    decoded = dm.decoder.decode(dm.decoder.read(tmp_path / "ok.png"), "ok")
    want = labels.copy()
    want[0, :3] = 255
    assert np.array_equal(decoded, want)
    assert dm.palette[1].tolist() == [128, 64, 128]  # predictions are drawn in these colours
    rgb[5, :4] = (1, 2, 3)
    rgb[6, :2] = (9, 9, 9)
    _mask(tmp_path / "bad.png", rgb)
    with pytest.raises(ValueError) as e:
        dm.decoder.decode(dm.decoder.read(tmp_path / "bad.png"), tmp_path / "bad.png")
    assert (
        f"mask {tmp_path / 'bad.png'} holds colours that are not in data.palette: (1, 2, 3) (4 pixels), "
        "(9, 9, 9) (2 pixels)" in str(e.value)
    )
    with pytest.raises(ValueError, match="single-channel"):
        dm.decoder.read(_mask(tmp_path / "gray.png", labels) or tmp_path / "gray.png")


def test_binary_masks_threshold_at_half_the_maximum_and_refuse_0_1(tmp_path):
    dm = _dm(tmp_path, classes=("background", "object"), mask_mode="binary")
    values = np.array([[0, 3, 127, 128, 200, 255]], np.uint8)  # a JPEG's grey edges
    assert dm.decoder.decode(values, "m").tolist() == [[0, 0, 0, 1, 1, 1]]
    assert "values other than 0 and 255: 3 (1 pixels)" in dm.decoder.warnings(values, "m")[0]
    Image.fromarray(np.array([[0, 255, 255]], np.uint8)).convert("1").save(tmp_path / "bits.png")  # 1-bit
    assert dm.decoder.decode(dm.decoder.read(tmp_path / "bits.png"), "m").tolist() == [[0, 1, 1]]
    with pytest.raises(ValueError, match="holds only 0 and 1, but data.mask_mode: binary reads 0 and 255"):
        dm.decoder.decode(np.array([[0, 1]], np.uint8), "m")


def test_0_255_masks_read_as_indices_are_refused_before_training(tmp_path):
    _tree(tmp_path, masks=lambda i: np.where(_labels(seed=i, k=2) == 1, 255, 0).astype(np.uint8))
    with pytest.raises(
        ValueError,
        match="hold only class 0 and the ignored value 255: 0/255 foreground masks\\? set data.mask_mode: binary",
    ):
        _dm(tmp_path, classes=("bg", "fg")).prepare_data()
    _dm(tmp_path, classes=("bg", "fg"), mask_mode="binary").prepare_data()


def test_list_files_and_unpaired_files_named_one_by_one(tmp_path):
    _tree(tmp_path)
    (tmp_path / "train.txt").write_text(
        "# image mask\nimages/train/x.jpg masks/train/x.png\n\nimages/train/sub/y.jpg masks/train/sub/y.png\n"
    )
    listed = _dm(tmp_path, train_images=None, train_masks=None, train_list="train.txt")
    assert listed.make_split("train").ids == ["images/train/x", "images/train/sub/y"]
    (tmp_path / "bad.txt").write_text("images/train/x.jpg\nimages/train/nope.jpg masks/train/x.png\n")
    with pytest.raises(PairingError) as e:
        _dm(tmp_path, train_images=None, train_masks=None, train_list="bad.txt").make_split("train")
    assert e.value.problems == [
        f"line 1 of {tmp_path / 'bad.txt'}: expected 'image_path mask_path', got 'images/train/x.jpg'",
        f"line 2 of {tmp_path / 'bad.txt'}: file not found: {tmp_path / 'images/train/nope.jpg'}",
    ]

    _image(tmp_path / "images/train/lonely.png")
    _mask(tmp_path / "masks/train/orphan.png", _labels())
    with pytest.raises(PairingError) as e:
        _dm(tmp_path).prepare_data()  # before anything is trained
    assert e.value.problems == [
        f"image without a mask: {tmp_path / 'images/train/lonely.png'} (no {tmp_path / 'masks/train/lonely'}.png "
        "or .bmp/.tif)",
        f"mask without an image: {tmp_path / 'masks/train/orphan.png'}",
    ]
    assert str(e.value).startswith("2 problem(s) pairing the train files: image without a mask: ")


def test_mask_suffix_and_an_empty_split(tmp_path):
    _image(tmp_path / "images/train/a.jpg")
    _mask(tmp_path / "masks/train/a_mask.png", _labels())
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "masks/val").mkdir(parents=True)
    dm = _dm(tmp_path, mask_suffix="_mask")
    assert dm.make_split("train").ids == ["a"]
    with pytest.raises(ValueError, match="the val split is empty: no image and mask pair in"):
        dm.prepare_data()


def test_val_fraction_holds_out_a_fixed_seeded_set(tmp_path):
    names = [f"im{i:02d}" for i in range(20)]
    _tree(tmp_path, names=names, val=())
    kw = {"val_images": None, "val_masks": None, "val_fraction": 0.25}
    held = _dm(tmp_path, **kw).held_out_names()
    assert len(held) == 5 and held == _dm(tmp_path, **kw).held_out_names()  # the same every time
    assert held != _dm(tmp_path, split_seed=1, **kw).held_out_names()
    dm = _dm(tmp_path, **kw)
    assert dm.make_split("val").ids == held
    assert sorted(dm.make_split("train").ids + held) == names
    with pytest.raises(ValueError, match="no validation set: give data.val_images"):
        _dm(tmp_path, val_images=None, val_masks=None, val_fraction=0)


def test_ade20k_layout(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for split, name in (("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")):
        _image(base / "images" / split / f"{name}.jpg")
        raw = np.zeros((20, 24), np.uint8)
        raw[:, 8:] = 1
        raw[:, 16:] = 150
        _mask(base / "annotations" / split / f"{name}.png", raw)
    dm = ADE20KDataModule(str(tmp_path), num_workers=0)  # the folder holding ADEChallengeData2016, or it itself
    assert ADE20KDataModule(str(base)).root == dm.root == str(base)
    assert dm.num_classes == 150 and len(set(ADE20K_CLASSES)) == 150
    assert (ADE20K_CLASSES[0], ADE20K_CLASSES[149]) == ("wall", "flag")
    dm.prepare_data()
    _, mask = dm.make_split("val").load(0)
    assert mask[0, [0, 8, 16]].tolist() == [255, 0, 149]  # unlabelled ignored, 1 -> wall, 150 -> flag
    assert dm.make_split("train").ids == ["ADE_train_00000001"]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"classes": ()}, "data.classes is empty"),
        ({"mask_mode": "colour"}, "data.mask_mode must be one of index, rgb, binary"),
        ({"mask_mode": "rgb"}, "data.mask_mode: rgb reads masks through data.palette"),
        ({"palette": [[0, 0, 0]]}, "data.palette must hold one \\[r, g, b\\] \\(0-255\\) per class: 3 colours"),
        ({"mask_mode": "binary"}, "data.mask_mode: binary has 2 classes"),
        ({"ignore_index": 1}, "data.ignore_index=1 is also a class value"),
        ({"label_map": {1: 5}}, "data.label_map 1: 5: raw values are 0-65535, classes 0-2 or 255"),
        ({"train_masks": None}, "data.train_images and data.train_masks go together"),
        ({"train_list": "x.txt"}, "give data.train_list or data.train_images with data.train_masks, not both"),
    ],
)
def test_configuration_errors_name_the_setting(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _dm(tmp_path, **kw)


def test_data_check_reports_every_problem_by_file_then_the_histogram_and_weights(tmp_path, capsys):
    _tree(tmp_path, names=("a", "b", "c", "d"), val=("v",))
    _mask(tmp_path / "masks/train/b.png", np.full((20, 24), 9, np.uint8))  # not a class
    _mask(tmp_path / "masks/train/c.png", _labels(h=10))  # another size than its image
    (tmp_path / "images/train/d.jpg").write_bytes(b"")  # unreadable
    _image(tmp_path / "images/val/lonely.jpg")
    from segkit.training.losses import enet_class_weights

    assert check(_dm(tmp_path), enet_class_weights) == 4
    out = capsys.readouterr().out
    assert f"PROBLEM ValueError: mask {tmp_path / 'masks/train/b.png'} holds values 9 (480 pixels)" in out
    assert f"size mismatch: image {tmp_path / 'images/train/c.jpg'} is (20, 24), mask" in out
    assert f"PROBLEM ValueError: empty image file (0 bytes): {tmp_path / 'images/train/d.jpg'}" in out
    assert f"PROBLEM image without a mask: {tmp_path / 'images/val/lonely.jpg'}" in out
    hist = np.bincount(_labels(seed=0).ravel(), minlength=3)  # a.png is the one good training mask
    assert f"  a{'':<21}{hist[0]:>14}" in out
    weights = enet_class_weights(hist)
    assert "class weights that model.class_weights: auto would use" in out and f"{weights[2]:>9.3f}" in out
    assert out.rstrip().endswith("4 problem(s) found")


@pytest.mark.slow
def test_folder_demo_trains_to_080_miou_and_every_command_takes_it(tmp_path, monkeypatch, capsys):
    """The README's "Train on your own data" with the bundled demo_folder.yaml, by its name from a folder without
    it (about 1.5 minutes on 2 CPU cores): data check, fit (class weights auto, cross-entropy + Dice, a held-out
    validation set), then validate, eval (and its prediction files scored again), predict (in the config's
    colours) and export on its checkpoint."""
    import json
    import re

    import torch
    from helpers import segkit_here

    from segkit.data.base import read_label_png

    monkeypatch.chdir(tmp_path)
    config = ("--config", "demo_folder.yaml")
    segkit_here(capsys, "data", "synthetic", "--root", "data/synthetic_folder")  # the README's command
    out = segkit_here(capsys, "data", "check", *config)
    assert "no problems found" in out and "class weights that model.class_weights: auto would use" in out

    out = segkit_here(capsys, "fit", *config, "--trainer.enable_progress_bar", "false")
    assert re.search(r"segkit: class weights \(auto: .*\n.*\nbackground +\d+\.\d+% +0\.7\d\d\nobject ", out), out[:3000]
    best = re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\): (\S+)", out)
    score, ckpt = float(best.group(1)), best.group(2)
    assert score >= 0.80, out[-3000:]
    run = Path(ckpt).parent.parent
    held_out = (run / "val_split.txt").read_text().split()
    assert len(held_out) == 36 and held_out[0].startswith("part_")  # 15% of the 240 pairs, by relative path

    out = segkit_here(capsys, "validate", *config, "--ckpt_path", ckpt, "--trainer.logger", "false")
    validated = re.findall(r"^\W*val/mIoU\W+(0\.\d{5,}|1\.0+)\W*$", out, re.M)
    assert float(validated[-1]) == pytest.approx(score, abs=1e-6), out[-2500:]

    segkit_here(
        capsys,
        "eval",
        *config,
        "--ckpt_path",
        ckpt,
        "--json",
        "eval.json",
        "--save_predictions",
        "preds",
        "--device",
        "cpu",
    )
    scores = json.loads(Path("eval.json").read_text())
    # one image at a time: validation's batches of 8 pad images to the largest, which moves the predictions a
    # little (ASPP's image pooling averages over the padding): measured 0.8729 here against 0.8607
    assert abs(scores["mIoU"] - score) < 0.03
    assert Path(f"preds/{held_out[0]}.png").is_file()  # named by relative path, in its sub-folder
    segkit_here(capsys, "eval", *config, "--predictions", "preds", "--json", "again.json")
    assert json.loads(Path("again.json").read_text())["mIoU"] == pytest.approx(scores["mIoU"], abs=1e-9)

    segkit_here(
        capsys,
        "predict",
        *config,
        "--ckpt_path",
        ckpt,
        "--input",
        "data/synthetic_folder/images/part_b/img_000*",
        "--output",
        "predicted",
        "--device",
        "cpu",
        "--num_workers",
        "0",
    )
    written = sorted(Path("predicted").glob("*.png"))
    assert len(written) == 5 and np.isin(read_label_png(written[0]), [0, 1]).all()  # img_0001, 0003, ... 0009
    with Image.open(written[0]) as im:
        assert im.getpalette()[3:6] == [255, 190, 0]  # class 1 in the config's colour

    segkit_here(
        capsys,
        "export",
        *config,
        "--ckpt_path",
        ckpt,
        "--format",
        "torchscript",
        "--output",
        "model.pt",
        "--height",
        "96",
        "--width",
        "96",
    )
    assert torch.jit.load("model.pt")(torch.zeros(1, 3, 96, 96)).shape == (1, 2, 96, 96)


def test_data_check_names_unknown_colours_and_warns_about_grey_binary_values(tmp_path, capsys):
    colours = np.asarray(PALETTE, np.uint8)
    _tree(tmp_path / "rgb", names=("a", "b"), masks=lambda i: colours[_labels(seed=i)])
    bad = colours[_labels()]
    bad[:2, :5] = (7, 7, 7)
    _mask(tmp_path / "rgb/masks/train/b.png", bad)
    assert check(_dm(tmp_path / "rgb", mask_mode="rgb", palette=PALETTE)) == 1
    out = capsys.readouterr().out
    assert (
        f"mask {tmp_path / 'rgb/masks/train/b.png'} holds colours that are not in data.palette: (7, 7, 7) "
        "(10 pixels)" in out
    )

    grey = np.where(_labels(k=2) == 1, 255, 0).astype(np.uint8)
    grey[0, :3] = 90
    _tree(tmp_path / "bin", names=("a",), masks=lambda i: grey)
    assert check(_dm(tmp_path / "bin", classes=("bg", "fg"), mask_mode="binary")) == 0  # a warning, not a problem
    out = capsys.readouterr().out
    assert (
        f"WARNING binary mask {tmp_path / 'bin/masks/train/a.png'} holds values other than 0 and 255: "
        "90 (3 pixels) (read as foreground above 127.5)" in out
    )
    assert out.rstrip().endswith("no problems found, 2 warning(s)")  # the train and the val mask


@pytest.mark.parametrize("reduce_zero_label", [False, True])
def test_a_mask_value_that_is_not_a_class_stops_fit_in_one_line(tmp_path, reduce_zero_label):
    """Through `segkit fit`: found before training (plain index masks: fit reads a sample of them first) or while
    loading a batch (here with reduce_zero_label), the error names the file and the values, in one line."""
    from helpers import CONFIGS

    from segkit.commands import main

    _tree(tmp_path, names=("a", "b"), masks=lambda i: np.where(_labels(seed=i) == 2, 7, 1).astype(np.uint8))
    with pytest.raises(SystemExit) as e:
        main(
            [
                "fit",
                "--config",
                str(CONFIGS / "demo_folder.yaml"),
                "--data.root",
                str(tmp_path),
                "--data.train_images",
                "images/train",
                "--data.train_masks",
                "masks/train",
                "--data.val_images",
                "images/val",
                "--data.val_masks",
                "masks/val",
                "--data.mask_mode",
                "index",
                "--data.classes",
                "[a, b, c]",
                "--data.palette",
                "null",
                "--data.reduce_zero_label",
                str(reduce_zero_label).lower(),
                "--data.crop_size",
                "16",
                "--data.batch_size",
                "2",
                "--model.class_weights",
                "null",
                "--trainer.max_steps",
                "2",
                "--trainer.logger",
                "false",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    message = str(e.value.code)
    assert message.startswith("segkit fit: mask ") and "holds values 7 (" in message and "\n" not in message
    assert (
        "that are not classes: the classes are " + ("1-3 (data.reduce_zero_label)" if reduce_zero_label else "0-2")
        in message
    )
