"""segkit as a package: the bundled configs and `--config NAME`, `segkit configs`, `segkit --version`,
`python -m segkit`; and the wheel, installed into a fresh environment and run from an empty folder."""

import os
import re
import shutil
import site
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, REPO, print_config, python, run_here

from segkit import __version__
from segkit.commands import main as segkit_main
from segkit.commands.config_lookup import bundled_configs, config_sources, description, resolve

BUNDLED = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def test_the_wheel_lists_every_package():
    """pyproject.toml lists the packages (configs/ is mapped into segkit/configs, which no search finds)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "segkit").rglob("__init__.py")}
    assert listed == found | {"segkit.configs"}


def _exit_message(argv) -> str:
    with pytest.raises(SystemExit) as exit:
        segkit_main(argv)
    return str(exit.value.code)


def test_every_config_in_the_package_has_a_one_line_description():
    # a source checkout (this editable install) reads the repository's top-level configs/ itself
    assert {path.parent for path in bundled_configs().values()} == {REPO / "configs"}
    assert sorted(bundled_configs()) == BUNDLED and len(BUNDLED) >= 7
    for name, path in bundled_configs().items():
        text = description(path)
        assert 20 < len(text) <= 110, (name, text)


def test_a_bundled_config_by_name_from_any_folder_and_a_local_file_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert resolve("voc") == resolve("voc.yaml") == str(CONFIGS / "voc.yaml")
    assert print_config(capsys, "--config", "voc")["trainer"]["max_steps"] == 30000
    # a file of the same name in the working folder wins, with or without .yaml on the command line
    local = yaml.safe_load((CONFIGS / "voc.yaml").read_text())
    local["trainer"]["max_steps"] = 123
    Path("voc.yaml").write_text(yaml.safe_dump(local))
    assert resolve("voc.yaml") == "voc.yaml" and resolve("voc") == "voc.yaml"
    for name in ("voc.yaml", "voc"):
        assert print_config(capsys, "--config", name)["trainer"]["max_steps"] == 123
    # what a run's saved config.yaml says of where its config came from
    assert config_sources([Path("voc.yaml"), CONFIGS / "voc.yaml", None]) == [
        f"--config {tmp_path / 'voc.yaml'}",
        f"--config voc.yaml: the config bundled with segkit {__version__} ({CONFIGS / 'voc.yaml'})",
        "--config given inline on the command line",
    ]
    # paths and inline configs are left to jsonargparse as before
    assert resolve(str(CONFIGS / "demo.yaml")) == str(CONFIGS / "demo.yaml")
    assert resolve("{trainer: {max_steps: 5}}") == "{trainer: {max_steps: 5}}"


def test_a_config_that_is_neither_a_file_nor_bundled_is_one_line_listing_the_bundled_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ", ".join(BUNDLED)
    for argv in (
        ["fit", "--config", "vocc.yaml"],
        ["validate", "--config=vocc"],
        ["eval", "--config", "vocc"],
        ["data", "check", "--config", "vocc.yaml"],
        ["predict", "-c", "vocc.yaml"],
        ["export", "--config", "vocc"],
        ["convert", "--config", "vocc"],
        ["test", "--config", "vocc"],
    ):
        message = _exit_message(argv)
        command = " ".join(argv[:2] if argv[0] == "data" else argv[:1])
        assert message.startswith(f"segkit {command}: --config vocc"), message
        assert f"no such file here and no bundled config of that name (bundled: {names};" in message
        assert "\n" not in message
    # a path that names no file: said so, with the bundled name when it is one (an old `configs/voc.yaml`)
    message = _exit_message(["fit", "--config", "configs/voc.yaml"])
    assert message == (
        f"segkit fit: --config configs/voc.yaml: no such file; segkit's own voc.yaml is "
        f"`--config voc.yaml` (bundled configs: {names}) (--debug shows where)"
    )


def test_configs_lists_and_copies_without_overwriting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    segkit_main(["configs"])
    lines = capsys.readouterr().out.splitlines()
    for name in BUNDLED:
        line = next(line for line in lines if line.startswith(f"{name}.yaml "))
        assert line.split(None, 1)[1] == description(CONFIGS / f"{name}.yaml")

    segkit_main(["configs", "voc", "--output", "edit/my_voc.yaml"])
    assert (tmp_path / "edit/my_voc.yaml").read_text() == (CONFIGS / "voc.yaml").read_text()
    assert "wrote edit/my_voc.yaml" in capsys.readouterr().out
    (tmp_path / "edit/my_voc.yaml").write_text("# mine\n")
    message = _exit_message(["configs", "voc.yaml", "--output", "edit/my_voc.yaml"])
    assert message == "segkit configs: edit/my_voc.yaml exists; give another --output (nothing was written)"
    assert (tmp_path / "edit/my_voc.yaml").read_text() == "# mine\n"

    segkit_main(["configs", "demo"])  # default: NAME.yaml here, which then wins over the bundled one
    assert (tmp_path / "demo.yaml").read_text() == (CONFIGS / "demo.yaml").read_text()
    assert "this local file now wins" in capsys.readouterr().out and resolve("demo") == "demo.yaml"
    segkit_main(["configs", "cityscapes", "--output", "-"])
    assert capsys.readouterr().out == (CONFIGS / "cityscapes.yaml").read_text()
    assert _exit_message(["configs", "nope"]).startswith("segkit configs: no bundled config nope (bundled: ade20k,")
    monkeypatch.setattr("segkit.commands.config_lookup.CONFIG_DIR", tmp_path / "missing")  # a broken installation
    assert _exit_message(["configs"]) == (
        f"segkit configs: no configs in {tmp_path / 'missing'}: this installation of segkit is incomplete, reinstall it"
    )


def test_version_and_python_m_segkit(tmp_path):
    out = python("-m", "segkit", "--version", cwd=tmp_path, check=True).stdout
    assert re.fullmatch(rf"segkit {re.escape(__version__)} \(torch \S+, lightning \S+, Python \S+\)\n", out), out
    # --version and configs answer without importing PyTorch
    probe = (
        "import sys; from segkit.commands import main; main(['--version']); main(['configs']); "
        "print('torch imported:', 'torch' in sys.modules)"
    )
    assert python("-c", probe, cwd=tmp_path, check=True).stdout.endswith("torch imported: False\n")
    proc = python("-m", "segkit", "configs", "nope", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"segkit configs: no bundled config nope (bundled: {', '.join(BUNDLED)})\n",
    )


LIGHT_COMMANDS = (
    "eval",
    "predict",
    "export",
    "convert",
    "summary",
    "configs",
    "data check",
    "data sbd",
    "data synthetic",
)
HEAVY = ("torch", "lightning", "wandb", "matplotlib")


def test_help_of_every_command_but_fit_imports_no_pytorch(tmp_path):
    """`segkit <command> --help` prints its options without importing PyTorch, Lightning, W&B or matplotlib (help
    in a fraction of a second; docs/benchmarks.md has the timings)."""
    probe = (
        "import sys\nfrom segkit.commands import main\n"
        f"for command in {LIGHT_COMMANDS!r}:\n"
        "    try:\n        main([*command.split(), '--help'])\n    except SystemExit as e:\n"
        "        assert e.code in (0, None), (command, e.code)\n"
        f"print('imported:', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = python("-c", probe, cwd=tmp_path, check=True).stdout
    assert out.endswith("imported: []\n"), out[-300:]
    for command in ("eval", "predict", "export", "convert"):
        assert f"usage: segkit {command}" in out
    assert "<function" not in out and "lambda" not in out  # choices are listed as such


@pytest.mark.parametrize("command", ["eval", "predict", "export", "convert"])
def test_the_help_only_parser_lists_the_options_of_the_full_one(command):
    """The help-only parser (the data and model sections as one option each) has every other option of the
    parser that runs the command, with the same defaults."""
    import importlib

    module = importlib.import_module(f"segkit.commands.{command}")
    full, light = module.parser(), module.parser(help_only=True)

    def options(parser) -> dict:
        found = {}
        for action in parser._actions:
            for flag in action.option_strings:
                top = flag.split(".")[0]
                if top in ("--data", "--model") and command != "export" or flag.startswith("--data"):
                    found[top] = None
                else:
                    found[flag] = action.default
        return found

    assert options(light) == options(full)


@pytest.mark.slow
def test_the_wheel_holds_the_configs_and_runs_from_an_empty_folder(tmp_path):
    """The wheel, installed (not editable) into a fresh environment that borrows this one's dependencies but not
    its segkit, runs the README's commands from an empty folder."""
    src = tmp_path / "src"  # built from a copy, so that the build writes nothing into the repository
    shutil.copytree(REPO / "segkit", src / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", src / "configs")  # the wheel ships them as segkit/configs
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    python(
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-w",
        tmp_path / "dist",
        src,
        cwd=tmp_path,
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("segkit-*.whl")
    assert wheel.name.startswith(f"segkit-{__version__}-py3-none-any")
    assert {f"segkit/configs/{name}.yaml" for name in BUNDLED} <= set(zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    python("-m", "venv", "--without-pip", venv, cwd=tmp_path, check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    venv_python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    purelib = python_in(venv_python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp_path).strip()
    # this environment's packages, after the new one's own (a plain path: its editable segkit hook is not run)
    Path(purelib, "borrowed.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    python("-m", "pip", "--python", venv_python, "install", "--no-deps", "--quiet", wheel, cwd=tmp_path, check=True)

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "2"

    def installed(*args) -> str:
        proc = _run([bin_dir / "segkit", *args], work, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "args parameter is intended" not in proc.stderr  # Lightning's warning about passing argv
        return proc.stdout

    where = python_in(venv_python, "import segkit; print(segkit.__file__)", work, env).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's segkit, not this checkout's
    assert installed("--version").startswith(f"segkit {__version__} ")
    listing = installed("configs")
    assert all(f"{name}.yaml " in listing for name in BUNDLED) and str(venv) in listing

    out = installed(
        "fit",
        "--config",
        "demo.yaml",
        "--trainer.max_steps",
        "3",
        "--trainer.val_check_interval",
        "3",
        "--trainer.check_val_every_n_epoch",
        "null",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--data.num_train",
        "24",
        "--data.num_val",
        "4",
    )
    best = re.search(r"Best checkpoint \(val/mIoU = [\d.]+\): (\S+)", out)
    assert best, out[-2000:]
    checkpoint = work / best.group(1)
    assert checkpoint.is_file() and checkpoint.is_relative_to(work / "runs")
    assert (work / "data" / "synthetic_voc" / "VOCdevkit").is_dir()  # data.root stays relative to the working folder
    header = checkpoint.parents[1].joinpath("config.yaml").read_text()
    assert f"# --config demo.yaml: the config bundled with segkit {__version__} ({Path(where).parent}" in header

    printed = yaml.safe_load(installed("fit", "--config", "voc.yaml", "--print_config"))
    assert printed["data"]["class_path"] == "segkit.data.VOCDataModule"
    assert (printed["trainer"]["max_steps"], printed["model"]["encoder"]) == (30000, "xception65")
    assert sorted(p.name for p in work.iterdir()) == ["data", "runs"]  # nothing else written here


def _run(cmd, cwd, env=None):
    import subprocess

    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env)


def python_in(interpreter, code: str, cwd, env=None) -> str:
    proc = _run([interpreter, "-c", code], cwd, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_value_outside_the_choices_names_them_in_one_line(capsys):
    assert run_here(capsys, "export", "--ckpt_path", "x", "--output", "y", "--format", "bad").stderr.splitlines()[
        0
    ] == ("segkit export: format: must be one of 'onnx', 'torchscript', got bad (on the command line)")
