"""A full disk: one line naming the file, the bytes needed and free, exit status 1, earlier files untouched and no
partial files; on a small filesystem the tests mount when they may, and by a writer that fails as a full disk
does (PyTorch's RuntimeError with the ENOSPC OSError as its context)."""

import errno

import pytest
import torch
from helpers import CONFIGS, TINY_VOC_ARGS, run_here
from PIL import Image

from segkit.commands import one_line
from segkit.export.writers import write_new
from segkit.io import torch_files
from segkit.io.disk import DiskFullError, is_disk_full, tensor_bytes
from segkit.io.torch_files import save_atomic


def _fails_as_a_full_disk(obj, f):
    f.write(b"x" * 100)
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def test_a_full_disk_in_save_atomic_names_the_file_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomic({"step": 1}, path)
    monkeypatch.setattr(torch_files.torch, "save", _fails_as_a_full_disk)
    state = {"w": torch.zeros(1000)}
    with pytest.raises(DiskFullError) as error:
        save_atomic(state, path)
    message = str(error.value)
    assert message.startswith(f"no space left for {path}: it needs about 4.0 KB, ") and "free on its disk" in message
    assert error.value.needed == tensor_bytes(state) == 4000 and error.value.free > 0
    monkeypatch.undo()
    assert torch.load(path) == {"step": 1}  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_save_atomic_on_a_really_full_disk(small_disk):
    save_atomic({"step": 1}, small_disk / "last.ckpt")
    with pytest.raises(DiskFullError) as error:
        save_atomic({"w": torch.zeros(1_000_000)}, small_disk / "last.ckpt")  # 4 MB on 2 MB
    assert error.value.needed == 4_000_000 and error.value.free < 2_100_000
    assert torch.load(small_disk / "last.ckpt") == {"step": 1}
    assert [p.name for p in small_disk.iterdir()] == ["last.ckpt"]


def test_a_full_disk_in_an_export_leaves_no_partial_file(tmp_path):
    def write(partial):
        partial.write_bytes(b"onnx")
        raise OSError(errno.ENOSPC, "No space left on device", str(partial))

    with pytest.raises(DiskFullError) as error:
        write_new(tmp_path / "model.onnx", write)
    assert str(error.value).startswith(f"no space left for {tmp_path / 'model.onnx'}: it did not fit, ")
    assert not list(tmp_path.iterdir())


def test_other_writers_full_disks_are_one_line():
    error = OSError(errno.ENOSPC, "No space left on device", "/tmp/out/mask.png")
    assert is_disk_full(error)
    assert one_line(error).startswith("no space left for /tmp/out/mask.png: ") and "\n" not in one_line(error)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_fit_on_a_full_disk_warns_first_and_stops_in_one_line(tiny_voc, small_disk, capsys):
    args = ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, *TINY_VOC_ARGS, "--trainer.logger", "false"]
    args += ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"]
    proc = run_here(capsys, "fit", *args, "--trainer.default_root_dir", small_disk, cwd=small_disk.parent)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "segkit: warning: " in proc.stdout and "it may stop when the disk fills" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("segkit fit: no space left for ") and "needs about" in last and "free on its disk" in last
    assert not [p for p in small_disk.rglob("*") if p.is_file() and ".tmp" in p.name]  # no partial checkpoint


def test_predict_on_a_full_disk_names_the_file_and_removes_it(tiny_voc, checkpoint, tmp_path, capsys, monkeypatch):
    from segkit.inference import outputs

    def overlay_on_a_full_disk(path, *args):
        path.write_bytes(b"\xff\xd8 half a JPEG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_write_encoded", overlay_on_a_full_disk)
    image = next((tiny_voc / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    args = ["--config", CONFIGS / "voc.yaml", "--ckpt_path", checkpoint, "--input", image, "--device", "cpu"]
    proc = run_here(capsys, "predict", *args, "--output", tmp_path / "out", "--num_workers", "0", cwd=tmp_path)
    overlay = tmp_path / "out" / f"{image.stem}_overlay.jpg"
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"segkit predict: no space left for {overlay}: ")
    assert not overlay.exists() and (tmp_path / "out" / f"{image.stem}.png").is_file()  # the mask before it stays


def test_eval_reports_on_a_full_disk_name_the_file(tiny_voc, checkpoint, tiny_disk, capsys):
    args = ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, "--ckpt_path", checkpoint, "--device", "cpu"]
    args += ["--data.num_workers", "0", "--output_dir", tiny_disk / "report", "--trimap", "2", "--calibration"]
    proc = run_here(capsys, "eval", *args, cwd=tiny_disk.parent)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"segkit eval: no space left for {tiny_disk / 'report'}/") and ".png: it did not fit" in last
    for png in tiny_disk.rglob("*.png"):  # what was written is whole
        Image.open(png).load()


def test_a_logger_on_a_full_disk_names_the_run_folder(tiny_voc, tmp_path, capsys, monkeypatch):
    """The CSV logger's write fails as a full disk does (an OSError without a file name): one line naming the
    run folder where the logs go (logs/version_0 holds its hparams.yaml), exit 1."""
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    def save_on_a_full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ExperimentWriter, "save", save_on_a_full_disk)
    args = ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, *TINY_VOC_ARGS]
    args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs"]
    args += ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"]
    proc = run_here(capsys, "fit", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("segkit fit: no space left for logs/version_0: it did not fit, "), last
    assert "free on its disk" in last
    assert (tmp_path / "logs" / "version_0" / "hparams.yaml").is_file()  # the folder named is where the logs go
