"""Fixtures: tiny synthetic data sets in the real on-disk layouts (written by segkit itself), briefly trained
checkpoints, the official graph's outputs, small filesystems, and W&B offline in every test. Helpers: helpers.py."""

import json
import os
import subprocess
from pathlib import Path

# pytest-xdist's workers run side by side on the cores: one thread each, their subprocesses too (two PyTorch
# processes that each use every core slow each other down many times over)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import lightning as L  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402
from helpers import CONFIGS, EXPORT_FORMS, REPO, cli, python, randomize_batchnorm  # noqa: E402

os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The file or folder ``name`` that ``build(path)`` writes, built once per test session and shared by every
    pytest-xdist worker (the first to ask builds it, under a file lock; the others wait and read it): the
    trained models, exported files and official graphs that several test files use cost seconds each."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    target = root / "built_once" / name
    target.parent.mkdir(exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not target.exists():
            partial = target.with_name(f"{name}.partial")
            build(partial)
            partial.rename(target)
    return target


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """A VOC-layout directory with 12 training and 5 validation images (64-96 px)."""
    from segkit.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("tiny_voc")
    make_synthetic_voc(root, num_train=12, num_val=5, size_range=(64, 96), seed=1)
    return root


@pytest.fixture(scope="session")
def official(tmp_path_factory):
    """``official(arch)``: the prefix of a checkpoint of the official DeepLabV3+ graph (tests/official_tf.py, run
    by TensorFlow in a subprocess) with random weights and batch-norm statistics, for ``xception41/65/71``;
    next to it the graph's inputs and logits at 513 px, output stride 16, and with ``every_size`` also at 320 px
    (odd and even) and output stride 8 (``image_<size>.npy``, ``logits_<size>_os<stride>.npy``, NCHW), and the
    official evaluation's probabilities (``eval_probs.npy``). Each graph runs once per session, in a TensorFlow
    process of its own, when a test first asks for it (the default set needs Xception-41 at 513 px alone)."""

    def reference(arch: str, every_size: bool = False) -> str:
        sizes, strides = ("513,320", "16,8") if every_size else ("513", "16")

        def build(folder: Path) -> None:
            depth = arch.removeprefix("xception")
            python(REPO / "tests" / "official_tf.py", folder, depth, sizes, strides, cwd=folder.parent, check=True)

        # official_tf.py writes ROOT/xception<depth>/model.ckpt and the graph's outputs beside it
        name = f"official_{arch}" + ("_every_size" if every_size else "")
        return str(built_once(tmp_path_factory, name, build) / arch / "model.ckpt")

    return reference


@pytest.fixture(scope="session")
def checkpoint(tiny_voc, tmp_path_factory):
    """A small VOC model (xception_tiny, decoder width 32) after 15 training steps. What it predicts is left to
    chance (mostly background): tests compare two computations on it, never its scores; those that need several
    classes take :func:`varied_checkpoint`."""

    from segkit.data import VOCDataModule
    from segkit.training.task import SegmentationTask

    def build(path: Path) -> None:
        L.seed_everything(0)
        task = SegmentationTask(num_classes=21, encoder="xception_tiny", decoder_channels=32, lr=0.05)
        trainer = L.Trainer(
            max_steps=15,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            default_root_dir=tmp_path_factory.mktemp("checkpoint"),
            enable_checkpointing=False,
        )
        trainer.fit(task, VOCDataModule(root=str(tiny_voc), batch_size=4, crop_size=48, num_workers=0))
        trainer.save_checkpoint(path)

    return built_once(tmp_path_factory, "checkpoint.ckpt", build)


@pytest.fixture(scope="session")
def random_bn_checkpoint(checkpoint, tmp_path_factory):
    """:func:`checkpoint` with random batch-norm statistics and scales, so that folding them is tested."""
    from segkit.training.task import SegmentationTask

    def build(path: Path) -> None:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
        task = SegmentationTask(**{**data["hyper_parameters"], "pretrained": None})
        task.load_state_dict(data["state_dict"])
        data["state_dict"] = randomize_batchnorm(task).state_dict()
        torch.save(data, path)

    return built_once(tmp_path_factory, "random_bn.ckpt", build)


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """A W&B run made inside the test process leaves WANDB_SERVICE (its service's socket) in os.environ;
    subprocesses started by later tests would attach to that service instead of starting their own."""
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def photos(tiny_voc, tmp_path_factory):
    """Three PNG photos of odd and even sizes (97 x 131, 513 x 513, 360 x 480), tiny_voc training images resized:
    what ``segkit predict`` and the exported files are compared on."""
    import cv2

    from segkit.data.base import read_image

    folder = tmp_path_factory.mktemp("photos")
    sources = sorted((tiny_voc / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    for source, (h, w) in zip(sources, [(97, 131), (513, 513), (360, 480)]):
        image = cv2.resize(read_image(source), (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"{source.stem}_{h}x{w}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


# The test-time settings under which varied_checkpoint's label maps must hold several classes: those of the
# tests that check so (test_end_to_end.py; test_tiled.py; test_video.py on the clip's first frame). Its images:
# the three photos sorted by name, then that frame as OpenCV decodes it. Each threshold adds a border between
# classes where float rounding may flip a pixel: no more than needed.
VARIED_SETTINGS = (
    {"scales": (1.0,), "flip": False},
    {"scales": (0.5, 1.0, 1.75), "flip": True, "images": [0, 1, 2]},
)


@pytest.fixture(scope="session")
def clip(photos, tmp_path_factory):
    """An MP4 of 24 frames (96 x 128) panning over the 513 x 513 photo, 12 frames/s."""
    from videos import pan_frames, write_video

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, pan_frames(photos, 24), fps=12)
    return path


@pytest.fixture(scope="session")
def varied_checkpoint(random_bn_checkpoint, photos, clip, tmp_path_factory):
    """:func:`random_bn_checkpoint` whose label maps of :func:`photos` and of :func:`clip`'s first frame hold several
    classes by construction under every setting of ``VARIED_SETTINGS`` (two disjoint sets of classes,
    each on 2% of the image or more; tests/varied_labels.py), so that agreeing labels say something: the
    briefly trained model's maps are all background."""
    from varied_labels import set_varied_classifier
    from videos import decoded_frames

    from segkit.data.base import read_image
    from segkit.data.transforms import eval_transform
    from segkit.training.task import SegmentationTask

    def build(path: Path) -> None:
        data = torch.load(random_bn_checkpoint, map_location="cpu", weights_only=False)
        task = SegmentationTask(**{**data["hyper_parameters"], "pretrained": None})
        task.load_state_dict(data["state_dict"])
        task.eval()
        transform = eval_transform((0.5,) * 3, (0.5,) * 3)
        pictures = [read_image(f) for f in sorted(photos.glob("*.png"))] + decoded_frames(clip)[0][:1]
        images = [transform(image=picture)["image"][None] for picture in pictures]
        shares = set_varied_classifier(task.model, images, VARIED_SETTINGS)
        # every group holds pixels of this machine's own floats (2% of each image or more; 7.8% to 41% measured)
        assert min(min(s) for s in shares) >= 0.02, shares
        data["state_dict"] = task.state_dict()
        torch.save(data, path)

    return built_once(tmp_path_factory, "varied.ckpt", build)


@pytest.fixture(scope="session")
def end_to_end_onnx(varied_checkpoint, tmp_path_factory):
    """``segkit export --end_to_end`` of :func:`varied_checkpoint` (one scale, labels out)."""
    from segkit.commands import main

    def build(path: Path) -> None:
        config = str(REPO / "configs" / "voc.yaml")
        try:
            main(
                ["export", "--config", config, "--ckpt_path", str(varied_checkpoint), "--end_to_end"]
                + ["--output", str(path)]
            )
        except SystemExit as e:
            assert not e.code, e.code

    return built_once(tmp_path_factory, "deeplab.onnx", build)


def _mounted(folder, size: str):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs the right to mount, as root in a container has; skipped otherwise)."""
    yield _mounted(tmp_path / "small", "2m")
    subprocess.run(["umount", str(tmp_path / "small")], check=True)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KB tmpfs, as :func:`small_disk`."""
    yield _mounted(tmp_path / "tiny", "64k")
    subprocess.run(["umount", str(tmp_path / "tiny")], check=True)


def _segkit_in_process(*argv) -> str:
    """``segkit ARGV`` in this process (a session fixture has no capsys), which must succeed; its standard output."""
    import contextlib
    import io

    from segkit.commands import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            assert not e.code, f"segkit {' '.join(map(str, argv))}: {e.code}"
    return out.getvalue()


QUICK_FIT = (
    "--trainer.max_steps",
    "12",
    "--trainer.val_check_interval",
    "12",
    "--trainer.enable_progress_bar",
    "false",
)


class HeadRun:
    """A tiny model of one ``head`` trained once per session (12 steps, decoder width 32, on 24 synthetic images of
    64 to 80 px): its data folder, the config arguments that read it, its best checkpoint, and for a sigmoid head
    the checkpoint with thresholds tuned by ``segkit eval --tune_thresholds`` on the validation split, with what
    that command printed and recorded (``tuned_out``, ``tuned_json``); ``model``: the tuned checkpoint where
    there is one, else the best."""

    def __init__(self, root: Path, args: list, head: str) -> None:
        self.root, self.args, self.head = root, args, head
        self.data = root / "data"
        self.checkpoint = next((root / "runs").rglob("best-*.ckpt"))
        self.tuned = root / "tuned.ckpt"  # a sigmoid head's; a softmax head has no thresholds to tune
        self.tuned_out = (root / "tuned.txt").read_text() if self.tuned.exists() else None
        self.tuned_json = json.loads((root / "tuned.json").read_text()) if self.tuned.exists() else None
        self.model = self.tuned if self.tuned.exists() else self.checkpoint  # what the per-head tests run


def _head_run(tmp_path_factory, name: str, make_data, config: str, extra: list, tune: bool = True) -> HeadRun:
    def args_for(root: Path) -> list:
        data = {"data__root": root / "data", "data__crop_size": 64, "data__val_fraction": 0.25}
        return cli(config=CONFIGS / config, **data, model__decoder_channels=32) + list(extra)

    def build(root: Path) -> None:
        make_data(root / "data", num_images=24, size_range=(64, 80), seed=0)
        runs = cli(trainer__default_root_dir=root / "runs", trainer__logger__init_args__save_dir=root / "runs")
        _segkit_in_process("fit", *args_for(root), *QUICK_FIT, *runs)
        if not tune:
            return
        best = next((root / "runs").rglob("best-*.ckpt"))
        tuning = cli(tune_thresholds=root / "tuned.ckpt", json=root / "tuned.json")
        out = _segkit_in_process("eval", *args_for(root), "--ckpt_path", best, "--device", "cpu", *tuning)
        (root / "tuned.txt").write_text(out)

    # the paths inside the config arguments are the shared folder's, the same for every worker
    root = built_once(tmp_path_factory, name, build)
    return HeadRun(root, args_for(root), name.removesuffix("_run"))


@pytest.fixture(scope="session")
def multilabel_run(tmp_path_factory) -> HeadRun:
    """:class:`HeadRun` of a multi-label model (demo_multilabel.yaml: buildings, roads, flood water)."""
    from segkit.data.synthetic import make_synthetic_multilabel

    return _head_run(tmp_path_factory, "multilabel_run", make_synthetic_multilabel, "demo_multilabel.yaml", [])


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory) -> HeadRun:
    """:class:`HeadRun` of a binary sigmoid model (demo_folder.yaml with ``model.head: sigmoid``)."""
    from segkit.data.synthetic import make_synthetic_folder

    extra = cli(model__head="sigmoid", model__class_weights="null", model__loss="{binary_cross_entropy: 1.0}")
    return _head_run(tmp_path_factory, "binary_run", make_synthetic_folder, "demo_folder.yaml", extra)


@pytest.fixture(scope="session")
def multiclass_run(tmp_path_factory) -> HeadRun:
    """:class:`HeadRun` of a softmax model on the data of :func:`binary_run` (demo_folder.yaml), not tuned."""
    from segkit.data.synthetic import make_synthetic_folder

    return _head_run(tmp_path_factory, "multiclass_run", make_synthetic_folder, "demo_folder.yaml", [], tune=False)


HEADS = ("multiclass", "binary", "multilabel")


@pytest.fixture(params=HEADS)
def head_run(request) -> HeadRun:
    """Each head's :class:`HeadRun` in turn (softmax, binary sigmoid at its tuned threshold, multi-label at its
    tuned thresholds): a test that takes it runs for every head."""
    return request.getfixturevalue(f"{request.param}_run")


@pytest.fixture(scope="session")
def head_export(tmp_path_factory):
    """``head_export(run, form)``: the file of ``segkit export`` of a :class:`HeadRun`'s model in one of
    :data:`EXPORT_FORMS`, built once per session per head and form."""

    def exported(run: HeadRun, form: str) -> Path:
        name = "model.pt" if form == "logits_torchscript" else "model.onnx"

        def build(folder: Path) -> None:
            folder.mkdir()
            options = EXPORT_FORMS[form][0]
            _segkit_in_process("export", *run.args, "--ckpt_path", run.model, "--output", folder / name, *options)

        return built_once(tmp_path_factory, f"{run.head}_{form}", build) / name

    return exported
