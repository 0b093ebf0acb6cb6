"""W&B dashboards, read back from the offline run files: config, scalars, tables, images, artifacts, DDP, eval."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import CONFIGS, TINY_VOC_ARGS, run_here, segkit


def wandb_records(run_dir: Path) -> list:
    """The records of an offline run file (``run-<id>.wandb``: a W&B header, then a LevelDB-style log of
    protobuf ``Record`` messages in 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            chunks.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def _items(updates) -> dict:
    """Values logged as nested dicts (images, tables) come as one item per leaf."""
    out = {}
    for u in updates:
        *parents, leaf = [u.key] if u.key else list(u.nested_key)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = json.loads(u.value_json)
    return out


def _merge(into: dict, new: dict) -> None:
    """Config updates arrive in pieces."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def read_run(run_dir: Path) -> dict:
    """config, history rows, summary, run record and artifacts of an offline run."""
    out = {"config": {}, "history": [], "summary": {}, "artifacts": [], "run": None}
    for r in wandb_records(run_dir):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = r.run
            _merge(out["config"], _items(r.run.config.update))
        elif kind == "config":
            _merge(out["config"], _items(r.config.update))
        elif kind == "history":
            out["history"].append(_items(r.history.item))
        elif kind == "summary":
            out["summary"] |= _items(r.summary.update)
        elif kind == "artifact":
            out["artifacts"].append(
                (r.artifact.name, json.loads(r.artifact.metadata or "{}"), list(r.artifact.aliases))
            )
    return out


def _fit(tiny_voc, cwd, *extra, devices=1, capsys=None):
    """`segkit fit` for 4 steps; in this process when given ``capsys`` (one process only; its stdout), else in a
    subprocess (its stdout and stderr)."""
    args = (
        "fit",
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        *TINY_VOC_ARGS,
        "--trainer.devices",
        devices,
        "--trainer.strategy",
        "ddp" if devices > 1 else "auto",
        "--trainer.precision",
        "32",
        "--trainer.max_steps",
        "4",
        "--trainer.val_check_interval",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        *extra,
    )
    if capsys is not None:
        proc = run_here(capsys, *args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout
    proc = segkit(*args, cwd=cwd, env={"WANDB_MODE": "offline"}, threads=1 if devices > 1 else None, check=True)
    return proc.stdout + proc.stderr


def _eval(*args, cwd) -> subprocess.CompletedProcess:
    """`segkit eval` with W&B offline, in a process of its own: W&B keeps settings per process (where it writes
    its files, a resumed run's id), so a run in the test process after others was not where the test looks."""
    return segkit("eval", *args, cwd=cwd, env={"WANDB_MODE": "offline"})


@pytest.fixture(scope="module")
def wandb_run(tiny_voc, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("wandb")
    stdout = _fit(tiny_voc, cwd, "--trainer.logger.log_model", "true")
    (run_dir,) = (cwd / "lightning_logs" / "wandb").glob("offline-run-*")
    return cwd, stdout, run_dir, read_run(run_dir)


def test_offline_run_holds_config_scalars_and_best_miou(wandb_run):
    cwd, stdout, run_dir, run = wandb_run
    assert run["run"].project == "segkit-voc" and list(run["run"].tags) == ["voc", "xception65", "os16"]
    # the full resolved config, not only the model's arguments
    assert run["config"]["trainer"]["max_steps"] == 4 and run["config"]["data"]["init_args"]["crop_size"] == 48
    assert run["config"]["model"]["encoder"] == "xception_tiny"
    losses = [h["train/loss"] for h in run["history"] if "train/loss" in h]
    lrs = [h["train/lr"] for h in run["history"] if "train/lr" in h]
    assert len(losses) == 4 and len(lrs) == 4  # every step
    mious = [h["val/mIoU"] for h in run["history"] if "val/mIoU" in h]
    assert len(mious) == 2  # one per validation (steps 2 and 4)
    assert any("val/IoU/background" in h for h in run["history"])
    assert run["summary"]["best/val_mIoU"] == pytest.approx(max(mious))
    assert run["summary"]["val/mIoU"] == {"max": pytest.approx(max(mious))}
    # the printed hint, once, names the run folder
    assert stdout.count("upload it with") == 1 and f"wandb sync lightning_logs/wandb/{run_dir.name}" in stdout
    # no warning of W&B's about segkit's own settings (anonymous=None, a run folder not made yet, linked files)
    assert "wandb: WARNING" not in stdout, [line for line in stdout.splitlines() if "WARNING" in line]
    # the run's own folder holds its checkpoints and config.yaml; W&B has the file too
    run_id = run_dir.name.rsplit("-", 1)[1]
    assert (cwd / "lightning_logs" / "segkit-voc" / run_id / "config.yaml").is_file()
    assert (run_dir / "files" / "config.yaml").is_file()


def test_offline_run_holds_table_confusion_and_mask_images(wandb_run):
    _, _, run_dir, run = wandb_run
    media = run_dir / "files" / "media"
    tables = [h for h in run["history"] if "val/iou_table" in h]
    assert len(tables) == 2
    table = json.loads((run_dir / "files" / tables[-1]["val/iou_table"]["path"]).read_text())
    assert table["columns"] == ["class", "IoU", "accuracy"] and len(table["data"]) == 21
    assert table["data"][0][0] == "background"
    assert run["config"]["_wandb"]["visualize"]["val/iou_bar"]["panel_config"]["panelDefId"] == "wandb/bar/v0"
    assert len(list((media / "images" / "val").glob("confusion_*.png"))) == 2
    images = {k: v for h in run["history"] for k, v in h.items() if k.startswith("val/prediction/")}
    assert len(images) == 5  # all 5 validation images (num_images 8 > 5)
    first = next(iter(images.values()))
    assert set(first["masks"]) == {"prediction", "ground_truth"}
    assert (run_dir / "files" / first["masks"]["prediction"]["path"]).is_file()
    labels = json.dumps(run["config"]["_wandb"]["mask/class_labels"])
    for name in ("background", "aeroplane", "tvmonitor", "ignored"):
        assert f'"{name}"' in labels
    # the same images at every validation
    per_validation = [
        sorted(k for k in h if re.match(r"val/prediction/[^/]+$", k))
        for h in run["history"]
        if any(k.startswith("val/prediction/") for k in h)
    ]
    assert len(per_validation) == 2 and per_validation[0] == per_validation[1]


def test_multilabel_samples_show_each_class_as_a_layer_of_agreement():
    """A multi-label model's W&B sample: one mask layer per class, hits, false alarms, misses and unlabelled
    pixels told apart; predicted by the task's own decision at its thresholds."""
    import numpy as np
    import torch

    from segkit.training.task import SegmentationTask
    from segkit.wandb import mask_image, predict_samples

    truth = np.stack([np.array([[1, 0], [1, 0]]), np.array([[0, 0], [1, 255]])], -1).astype(np.uint8)  # (H, W, K)
    decided = np.array([[[True, False], [False, True]], [[True, True], [False, True]]])  # (K, H, W)
    image = mask_image(np.zeros((2, 2, 3), np.uint8), truth, decided, ["road", "flooded"], "x")
    assert list(image._masks) == ["road", "flooded"]
    road, flooded = (image._masks[n]._val["mask_data"] for n in ("road", "flooded"))
    assert road.tolist() == [[1, 0], [3, 2]]  # hit, nothing; missed, false alarm
    assert flooded.tolist() == [[2, 2], [3, 255]]  # false alarms; missed, unlabelled

    task = SegmentationTask(
        num_classes=3, encoder="xception_tiny", decoder_channels=32, multilabel=True, head="sigmoid"
    )
    task.thresholds = [0.2, 0.5, 0.8]

    class Images:  # a validation set of one (H, W, C) image and its (H, W, K) masks, as SegmentationDataset's
        display = None
        samples = [Path("a/img.png")]

        def load(self, i):
            return np.random.default_rng(0).normal(size=(20, 24, 3)).astype(np.float32), np.zeros((20, 24, 3))

        def transform(self, image, mask):
            return {"image": torch.from_numpy(image).permute(2, 0, 1)}

    task.eval()
    predict = lambda x: task.head.probabilities(task(x))  # noqa: E731
    ((_, _, pred, name),) = predict_samples(predict, Images(), [0], "cpu", task.head)
    x = torch.from_numpy(Images().load(0)[0]).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = (task(x).sigmoid() > torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1))[0].numpy()
    assert pred.shape == (3, 20, 24) and np.array_equal(pred, want)


def test_checkpoints_are_artifacts_with_their_score(wandb_run):
    _, _, _, run = wandb_run
    models = [(meta, aliases) for name, meta, aliases in run["artifacts"] if name.startswith("model-")]
    files = sorted(meta["original_filename"] for meta, _ in models)
    assert files[-1] == "last.ckpt" and files[0].startswith("best-step")
    best = next((meta, aliases) for meta, aliases in models if meta["original_filename"].startswith("best"))
    assert "best" in best[1] and best[0]["SegkitCheckpoint"]["monitor"] == "val/mIoU"
    assert best[0]["score"] == pytest.approx(run["summary"]["best/val_mIoU"])


@pytest.mark.slow
def test_two_process_run_writes_one_wandb_run(tiny_voc, tmp_path):
    stdout = _fit(tiny_voc, tmp_path, devices=2)
    runs = list((tmp_path / "lightning_logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = read_run(runs[0])
    assert len([h for h in run["history"] if "val/mIoU" in h]) == 2  # logged once per validation, not per rank
    assert len([h for h in run["history"] if "train/loss" in h]) == 4
    assert stdout.count("upload it with") == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "logger", ["false", "lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.TensorBoardLogger"]
)
def test_other_loggers_still_work(tiny_voc, tmp_path, logger, capsys):
    stdout = _fit(tiny_voc, tmp_path, "--trainer.logger", logger, "--trainer.default_root_dir", tmp_path, capsys=capsys)
    assert "Best checkpoint" in stdout and "wandb sync" not in stdout
    assert not (tmp_path / "lightning_logs" / "wandb").exists() and not (tmp_path / "wandb").exists()
    if logger.endswith("CSVLogger"):
        assert "val/mIoU" in (tmp_path / "lightning_logs/version_0/metrics.csv").read_text()
        assert (tmp_path / "lightning_logs/version_0/config.yaml").is_file()
    elif logger.endswith("TensorBoardLogger"):
        assert list((tmp_path / "lightning_logs/version_0").glob("events.out.tfevents.*"))
    else:
        run = tmp_path / "runs" / "run_0"  # a folder of its own, next to which another run gets run_1
        assert (run / "config.yaml").is_file() and list((run / "checkpoints").glob("*.ckpt"))
        assert not (tmp_path / "checkpoints").exists()


def test_eval_logs_to_a_new_wandb_run(wandb_run, tiny_voc, tmp_path):
    cwd, _, _, _ = wandb_run
    ckpt = next((cwd / "lightning_logs" / "segkit-voc").rglob("last.ckpt"))
    proc = _eval(
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--data.num_workers",
        "0",
        "--ckpt_path",
        ckpt,
        "--device",
        "cpu",
        "--scales",
        "0.75",
        "1.0",
        "--wandb_project",
        "segkit-eval",
        "--wandb_images",
        "3",
        "--json",
        tmp_path / "s.json",
        "--output_dir",
        tmp_path / "analysis",
        "--worst",
        "2",
        "--trimap",
        "2",
        "5",
        "--boundary_iou",
        "--calibration",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert f"wandb sync {run_dir}" in proc.stdout
    run = read_run(run_dir)
    scores = json.loads((tmp_path / "s.json").read_text())
    assert run["run"].project == "segkit-eval" and run["config"]["eval"]["scales"] == [0.75, 1.0]
    assert run["summary"]["eval/mIoU"] == pytest.approx(scores["mIoU"])
    logged = {k for h in run["history"] for k in h}
    assert {"eval/iou_table", "eval/confusion"} <= logged
    assert len([k for k in logged if re.match(r"eval/prediction/[^/]+$", k)]) == 3
    # the analysis: its plots, the worst images' table, its numbers in the summary
    plots = {"confusion_matrix", "per_class_iou", "trimap", "reliability"}
    assert {f"eval/plots/{p}" for p in plots} | {"eval/worst"} <= logged
    assert run["summary"]["eval/ECE"] == pytest.approx(scores["calibration"]["ECE"])
    assert run["summary"]["eval/boundary_IoU"] == pytest.approx(scores["boundary_iou"]["mean"])
    assert run["summary"]["eval/trimap_mIoU/5px"] == pytest.approx(scores["trimap"]["mIoU"]["5"])


def test_offline_fallback_reasons(monkeypatch, tmp_path):
    from segkit.wandb import offline_reason

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert offline_reason() == "WANDB_MODE=offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert "no W&B API key" in offline_reason()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert offline_reason(timeout=1.0) == "127.0.0.1 cannot be reached"
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login user password " + "y" * 40 + "\n")
    monkeypatch.delenv("WANDB_API_KEY")
    assert offline_reason(timeout=1.0) == "127.0.0.1 cannot be reached"  # the key was found in the netrc file


def test_eval_logs_to_the_existing_training_run(wandb_run, tiny_voc, tmp_path):
    cwd, _, train_dir, _ = wandb_run
    run_id = train_dir.name.rsplit("-", 1)[1]
    ckpt = next((cwd / "lightning_logs" / "segkit-voc").rglob("last.ckpt"))
    proc = _eval(
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--data.num_workers",
        "0",
        "--ckpt_path",
        ckpt,
        "--device",
        "cpu",
        "--wandb_project",
        "segkit-voc",
        "--wandb_run_id",
        run_id,
        "--wandb_images",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert run_dir.name.endswith(run_id)  # the same run: `wandb sync` appends it to the training run
    run = read_run(run_dir)
    assert run["run"].run_id == run_id and "eval/mIoU" in run["summary"]


@pytest.mark.slow
def test_dashboard_of_a_folder_data_set(tmp_path):
    """W&B with your own data (FolderDataModule, the folder demo's config): the IoU table has its classes, the
    sample predictions are named by relative path (part_a/img_0001: sub-folders) with its class labels."""
    from segkit.data.synthetic import make_synthetic_folder

    make_synthetic_folder(tmp_path / "data" / "synthetic_folder", 40, size_range=(64, 80), seed=2)
    proc = segkit(
        "fit",
        "--config",
        "demo_folder.yaml",
        "--trainer.max_steps",
        "4",
        "--trainer.val_check_interval",
        "2",
        "--trainer.check_val_every_n_epoch",
        "null",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "segkit.wandb.WandbLogger",
        "--trainer.logger.project",
        "segkit-folder",
        "--trainer.logger.save_dir",
        "lightning_logs",
        "--trainer.callbacks+",
        "segkit.wandb.WandbDashboard",
        "--trainer.callbacks.num_images",
        "3",
        "--model.decoder_channels",
        "32",
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
        check=True,
    )
    assert "upload it with" in proc.stdout
    (run_dir,) = (tmp_path / "lightning_logs" / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    tables = [h["val/iou_table"] for h in run["history"] if "val/iou_table" in h]
    table = json.loads((run_dir / "files" / tables[-1]["path"]).read_text())
    assert [row[0] for row in table["data"]] == ["background", "object"]
    images = {k for h in run["history"] for k in h if k.startswith("val/prediction/")}
    names = {re.match(r"val/prediction/(part_[ab]/img_\d{4})", k).group(1) for k in images}
    held_out = next((tmp_path / "lightning_logs" / "segkit-folder").rglob("val_split.txt")).read_text().split()
    assert len(names) == 3 and names <= set(held_out)
    labels = json.dumps(run["config"]["_wandb"]["mask/class_labels"])
    assert '"object"' in labels and '"aeroplane"' not in labels


def test_eval_logs_every_head(head_run, tmp_path):
    """segkit eval's W&B logging for every head (the softmax head's new and existing runs also: the two tests
    above): the scores in the summary, the IoU table, sample predictions (a multi-label model's with one mask
    layer per class), the confusion matrix of single-label heads only, and the analysis's figures, plots and
    worst images."""
    head, run = head_run.head, head_run
    proc = _eval(
        *run.args, "--ckpt_path", run.model, "--device", "cpu", "--wandb_project", "segkit-eval",
        "--wandb_images", "2", "--json", tmp_path / "s.json", "--trimap", "3", "--calibration",
        "--output_dir", tmp_path / "analysis", "--worst", "1", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    scores = json.loads((tmp_path / "s.json").read_text())
    assert run["summary"]["eval/mIoU"] == pytest.approx(scores["mIoU"])
    assert {k: run["summary"][f"eval/IoU/{k}"] for k in scores["per_class_iou"]} == pytest.approx(
        scores["per_class_iou"], nan_ok=True
    )
    assert run["summary"]["eval/trimap_mIoU/3px"] == pytest.approx(scores["trimap"]["mIoU"]["3"])
    assert run["summary"]["eval/ECE"] == pytest.approx(scores["calibration"]["ECE"])
    logged = {k for h in run["history"] for k in h}
    assert "eval/iou_table" in logged and ("eval/confusion" in logged) == (head != "multilabel")
    assert {"eval/worst", "eval/plots/trimap", "eval/plots/reliability"} <= logged
    assert len([k for k in logged if k.startswith("eval/prediction/")]) == 2  # names may hold folders


def test_eval_samples_of_prediction_files_are_those_files(tiny_voc, tmp_path):
    """segkit eval --predictions logs samples read from the files: each the file's labels beside its ground truth
    (files written here from a known map), the same seed-0 images as a model's samples."""
    import numpy as np

    from segkit.data import VOCDataModule
    from segkit.wandb import eval_samples, sample_indices

    dataset = VOCDataModule(root=str(tiny_voc)).split_dataset("val")
    files = VOCDataModule(root=str(tiny_voc)).prediction_files
    written = {}
    for i, sample in enumerate(dataset.samples):
        labels = np.full(dataset.load(i)[1].shape, i, np.uint8)  # image i predicted as class i everywhere
        files.write(tmp_path, sample.name, labels)
        written[sample.name] = labels
    samples = eval_samples(dataset, 2, files=(files, tmp_path))
    indices = sample_indices(len(dataset), 2, 0)
    assert [name for *_, name in samples] == [dataset.samples[i].name for i in indices]
    for (picture, truth, pred, name), i in zip(samples, indices):
        image, want_truth = dataset.load(i)
        assert np.array_equal(picture, image) and np.array_equal(truth, want_truth)
        assert np.array_equal(pred, written[name])
