"""segkit.io.torch_files and every command that takes a checkpoint: a missing, empty, truncated, foreign or
mismatching file is one line that names the file and what is wrong, exit status 1, no traceback."""

import pickle

import pytest
import torch
from helpers import CONFIGS, TINY_VOC_ARGS, segkit

from segkit.commands import main
from segkit.io.torch_files import CheckpointFileError, read_checkpoint, read_torch_file


class Foreign:  # a pickled object of a class: what weights_only=True refuses
    pass


@pytest.fixture(scope="module")
def bad_files(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = checkpoint.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (root / "empty.ckpt").write_bytes(b"")
    (root / "notes.ckpt").write_text("not a checkpoint\n")
    (root / "image.ckpt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    torch.save({"model": Foreign()}, root / "foreign.ckpt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    torch.save({"weight": torch.zeros(2)}, root / "state_dict.pt")
    return root


CASES = {
    "missing.ckpt": r"checkpoint not found: .*missing\.ckpt",
    "empty.ckpt": r"checkpoint .*empty\.ckpt is empty \(0 bytes\)",
    "truncated.ckpt": r"checkpoint .*truncated\.ckpt is truncated or corrupt \(\d+ bytes; its writing was probably "
    r"interrupted\)",
    "notes.ckpt": r"checkpoint .*notes\.ckpt is not a PyTorch file \(a text file, 17 bytes\)",
    "image.ckpt": r"checkpoint .*image\.ckpt is not a PyTorch file \(a file starting with b'\\x89PNG'",
    "foreign.ckpt": r"checkpoint .*foreign\.ckpt holds Python objects other than tensors and plain values",
    "state_dict.pt": r"state_dict\.pt is not a segkit checkpoint \(no state_dict; it holds \['weight'\]\)",
}


def test_read_checkpoint_names_the_file_and_the_problem(bad_files, checkpoint):
    for name, message in CASES.items():
        with pytest.raises(CheckpointFileError, match=message):
            read_checkpoint(bad_files / name)
    assert read_torch_file(bad_files / "state_dict.pt")["weight"].shape == (2,)  # a plain state dict reads
    assert "state_dict" in read_checkpoint(checkpoint)


def _one_line(argv) -> str:
    with pytest.raises(SystemExit) as exit:
        main([str(a) for a in argv])
    message = str(exit.value.code)
    assert "\n" not in message and exit.value.code != 0
    return message


def test_every_command_reports_a_bad_checkpoint_in_one_line(bad_files, tiny_voc, tmp_path):
    config = ["--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, "--data.num_workers", "0"]
    bad = bad_files / "truncated.ckpt"
    commands = {
        "eval": ["eval", *config, "--ckpt_path", bad, "--device", "cpu"],
        "predict": [
            "predict",
            *config,
            "--ckpt_path",
            bad,
            "--input",
            tiny_voc / "VOCdevkit/VOC2012/JPEGImages",
            "--output",
            tmp_path / "p",
        ],
        "export": ["export", *config, "--ckpt_path", bad, "--format", "onnx", "--output", tmp_path / "m.onnx"],
        "validate": ["validate", *config, *TINY_VOC_ARGS, "--ckpt_path", bad, "--trainer.logger", "false"],
        "fit": ["fit", *config, *TINY_VOC_ARGS, "--ckpt_path", bad, "--trainer.logger", "false"],
    }
    for command, argv in commands.items():
        message = _one_line(argv)
        assert message.startswith(f"segkit {command}: checkpoint {bad} is truncated or corrupt"), (command, message)


def test_checkpoints_that_do_not_fit_the_config(checkpoint, tiny_voc):
    """The tiny checkpoint (xception_tiny, 21 VOC classes) with a 19-class config, and with an explicit
    --model.encoder that the checkpoint's own would silently replace."""
    common = ["validate", *TINY_VOC_ARGS, "--ckpt_path", checkpoint, "--trainer.logger", "false"]
    message = _one_line([*common, "--config", CONFIGS / "cityscapes.yaml", "--data.root", tiny_voc])
    assert message == (
        f"segkit validate: checkpoint {checkpoint} predicts 21 classes, the config's data set has 19: "
        "use the config the model was trained with"
    )
    message = _one_line(
        [*common, "--config", CONFIGS / "voc.yaml", "--data.root", tiny_voc, "--model.encoder", "xception41"]
    )
    assert message == (
        f"segkit validate: --model.encoder xception41 differs from the checkpoint's xception_tiny "
        f"({checkpoint}), which would replace it: drop the option or give another checkpoint"
    )


def test_traceback_only_with_debug(bad_files, tiny_voc, tmp_path):
    argv = [
        "eval",
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        "--ckpt_path",
        bad_files / "empty.ckpt",
        "--device",
        "cpu",
    ]
    plain = segkit(*argv, cwd=tmp_path)  # the command as users run it: status 1, one line, no traceback
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        f"segkit eval: checkpoint {bad_files / 'empty.ckpt'} is empty (0 bytes): its writing was interrupted; use "
        "another (--debug shows where)"
    ]
    with pytest.raises(CheckpointFileError, match="is empty"):  # --debug: the exception itself, with its traceback
        main([str(a) for a in argv] + ["--debug"])
