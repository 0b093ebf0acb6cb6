"""segkit.commands.config_errors: a configuration error is said in at most 3 lines that name the key, what is
wrong and where it was set (file and line, or the command line), with the nearest valid key for a misspelt one;
exit status 2, as argparse's usage errors. jsonargparse alone prints the whole usage text (some 90 lines) first."""

import pytest
from helpers import CONFIGS, run_here


@pytest.fixture
def demo(tmp_path):
    """The demo config as a local file, and a broken copy of it written by ``broken(old, new)``."""
    text = (CONFIGS / "demo.yaml").read_text()
    (tmp_path / "demo.yaml").write_text(text)

    def broken(old: str, new: str) -> str:
        assert old in text
        (tmp_path / "broken.yaml").write_text(text.replace(old, new, 1))
        line = text[: text.index(old)].count("\n") + 1
        return line

    return tmp_path, broken


def _error(capsys, cwd, *argv) -> str:
    proc = run_here(capsys, *argv, cwd=cwd)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3 and not proc.stdout, proc.stderr
    return lines[0]


def test_a_value_of_the_wrong_type_names_the_key_the_file_and_the_line(demo, capsys):
    folder, broken = demo
    line = broken("batch_size: 8", "batch_size: four")
    message = _error(capsys, folder, "fit", "--config", "broken.yaml")
    assert message == f"segkit fit: data.batch_size: expected int, got four (broken.yaml, line {line})"
    message = _error(capsys, folder, "fit", "--config", "demo.yaml", "--model.lr", "fast")
    assert message == "segkit fit: model.lr: expected float, got fast (on the command line)"


def test_an_unknown_key_gets_the_nearest_valid_one(demo, capsys):
    folder, broken = demo
    line = broken("  lr: ", "  learning_rate: ")
    message = _error(capsys, folder, "fit", "--config", "broken.yaml")
    assert message == f"segkit fit: unknown key model.learning_rate (broken.yaml, line {line}); did you mean model.lr?"
    assert _error(capsys, folder, "fit", "--config", "demo.yaml", "--trainer.max_stesp", "3") == (
        "segkit fit: unknown key trainer.max_stesp (on the command line); did you mean trainer.max_steps?"
    )
    # a data set's own options, through its class_path
    assert _error(capsys, folder, "validate", "--config", "demo.yaml", "--data.crop_szie", "3") == (
        "segkit validate: unknown key data.crop_szie (on the command line); did you mean data.crop_size?"
    )
    # nothing near: no suggestion
    assert _error(capsys, folder, "fit", "--config", "demo.yaml", "--model.zzz", "3") == (
        "segkit fit: unknown key model.zzz (on the command line)"
    )


def test_broken_yaml_names_the_file_line_and_column(demo, capsys):
    folder, broken = demo
    line = broken("max_steps: 1184", "max_steps: [1184")
    message = _error(capsys, folder, "fit", "--config", "broken.yaml")
    assert message.startswith(f"segkit fit: broken.yaml, line {line + 1}, column ") and "not valid YAML" in message
    # every command that takes a config reads it first
    message = _error(capsys, folder, "eval", "--config", "broken.yaml", "--ckpt_path", "x.ckpt")
    assert message.startswith(f"segkit eval: broken.yaml, line {line + 1}, column ")


def test_a_class_that_does_not_exist_and_a_value_out_of_its_choices(demo, capsys):
    folder, broken = demo
    line = broken("segkit.data.SyntheticVOCDataModule", "segkit.data.SyntheticVOCDataModul") - 1  # data's line
    assert _error(capsys, folder, "fit", "--config", "broken.yaml") == (
        f"segkit fit: data: module 'segkit.data' has no attribute 'SyntheticVOCDataModul' (broken.yaml, line {line})"
    )
    assert _error(capsys, folder, "fit", "--config", "demo.yaml", "--trainer.precision", "7") == (
        "segkit fit: trainer.precision: 7 is not an accepted value (on the command line)"
    )


def test_commands_of_segkit_own_say_their_errors_in_a_line(demo, capsys):
    folder, _ = demo
    assert _error(capsys, folder, "eval", "--config", "demo.yaml") == (
        "segkit eval: give one of --ckpt_path (score a checkpoint), --model_file (score an exported file) or "
        "--predictions (score prediction files)"
    )
    assert _error(capsys, folder, "export", "--config", "demo.yaml", "--ckpt_path", "x", "--format", "onnx") == (
        "segkit export: the following arguments are required: output"
    )


def test_a_data_set_refusing_its_options_says_so_in_one_line(tmp_path, capsys):
    """The data set's own check (here: bands against in_channels, before any file is read), not jsonargparse's
    list of union members and the whole data section."""
    proc = run_here(
        capsys, "fit", "--config", CONFIGS / "demo_multiband.yaml", "--data.bands", "[0, 1, 2]", cwd=tmp_path
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0] == ("segkit fit: data.in_channels=4 but data.bands lists 3 bands: give one (--debug shows where)")
