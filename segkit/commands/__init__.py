"""The ``segkit`` command, also ``python -m segkit``: one module of this package per command, each with its parser
and ``main(args)``, and the one routing table, :data:`COMMANDS`. Nothing in the library imports this package.

    segkit fit --config voc.yaml --data.root DIR
    segkit validate --config voc.yaml --ckpt_path CKPT
    segkit eval --config voc.yaml --ckpt_path CKPT --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip
    segkit predict --config voc.yaml --ckpt_path CKPT --input photos/ --output out/
    segkit export --config voc.yaml --ckpt_path CKPT --end_to_end --output deeplab.onnx
    segkit eval --config voc.yaml --model_file deeplab.onnx
    segkit convert --tf_checkpoint deeplabv3_pascal_train_aug/model.ckpt --config voc.yaml --output x65.ckpt
    segkit summary --encoder xception65 --size 513
    segkit data check --config cityscapes.yaml --data.root DIR
    segkit data sbd --sbd_root DIR --voc_root DIR
    segkit data synthetic --root DIR
    segkit configs [NAME]
    segkit --version

``--config`` takes a file, or the name of a config bundled with segkit when no such file exists
(:mod:`segkit.commands.config_lookup`). ``segkit --version`` and ``segkit configs`` answer without importing PyTorch
(a second, not ten).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from argparse import ArgumentError

from .config_errors import ConfigError, check_yaml, config_files, describe

# command -> the module of this package that runs it; fit, validate and test are LightningCLI's subcommands, and
# --help goes to LightningCLI too, whose help lists every command
COMMANDS = {
    "fit": "fit",
    "validate": "fit",
    "test": "fit",
    "eval": "eval",
    "predict": "predict",
    "export": "export",
    "convert": "convert",
    "summary": "summary",
    "data": "data",
    "configs": "configs",
}


def main(args: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if sys.argv and sys.argv[0].endswith("__main__.py"):  # run as `python -m segkit`: its usage lines say so
        sys.argv[0] = "python -m segkit"
    if argv[:1] in (["--version"], ["-V"]):
        print(version())
        return
    debug = "--debug" in argv or bool(os.environ.get("SEGKIT_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    usage = f"usage: segkit COMMAND ... ({', '.join(COMMANDS)}; `segkit --help` says more)"
    if not argv:
        print(usage, file=sys.stderr)
        sys.exit(2)
    if argv[0] not in COMMANDS and not argv[0].startswith("-"):
        near = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        print(
            f"segkit: no command {argv[0]}" + (f"; did you mean {near[0]}?" if near else "") + f"\n{usage}",
            file=sys.stderr,
        )
        sys.exit(2)
    name = COMMANDS.get(argv[0], "fit")
    where = " ".join(["segkit", *(argv[:2] if argv[:1] == ["data"] else argv[:1])])
    try:
        argv = resolve_argv(argv)  # --config NAME: a bundled config where no file NAME exists
        command = importlib.import_module(f"{__name__}.{name}")
        command.main(argv if name == "fit" else argv[1:])  # LightningCLI reads the subcommand itself
    except (ArgumentError, ConfigError) as e:  # the configuration: exit status 2, as argparse's usage errors
        if debug:
            raise
        message = str(e) if isinstance(e, ConfigError) else describe(str(e), argv)
        print(f"{where}: {message}\n(`{where} --help` lists the options)", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if debug or not _said_in_one_line(e):
            raise
        sys.exit(f"{where}: {one_line(e)} (--debug shows where)")


def version() -> str:
    """segkit's version and those of what it runs on, for bug reports."""
    from importlib.metadata import PackageNotFoundError, version

    from ..version import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"segkit {__version__} (torch {of('torch')}, lightning {of('lightning')}, Python {sys.version.split()[0]})"


def resolve_argv(argv: list[str]) -> list[str]:
    """The command line with every ``--config``/``-c`` value resolved by
    :func:`segkit.commands.config_lookup.resolve`."""
    from .config_lookup import resolve

    out, expect_value = [], False
    for arg in argv:
        if expect_value:
            out.append(resolve(arg))
            expect_value = False
        elif arg in ("--config", "-c"):
            out.append(arg)
            expect_value = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve(arg[len("--config=") :]))
        else:
            out.append(arg)
    for path in config_files(out):
        check_yaml(path)
    return out


def _said_in_one_line(error: Exception) -> bool:
    """Errors whose message says what is wrong: one line and exit status 1, the traceback only with --debug.
    segkit's checkpoint-file errors are ValueErrors; Lightning's MisconfigurationException is, for example, an
    accelerator this machine lacks."""
    if isinstance(error, (FileNotFoundError, FileExistsError, ValueError)):
        return True
    from ..io.disk import is_disk_full

    if is_disk_full(error):  # DiskFullError names the file and the bytes; another writer's names the file
        return True
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ..training.checkpoints import Diverged

    return isinstance(error, (Diverged, MisconfigurationException))


def one_line(error: BaseException) -> str:
    """The message; for an error raised in a DataLoader worker (PyTorch re-raises it with the worker's
    traceback in the message), the original error's own message."""
    from ..io.disk import DiskFullError, is_disk_full

    if is_disk_full(error) and not isinstance(error, DiskFullError):
        return _disk_full_message(error)
    message = str(error)
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1].split(": ", 1)[-1]
    if message.startswith("Does not validate against any of the Union subtypes"):
        # a data set's constructor refused its options: jsonargparse lists that error beside the other union
        # member's ("Expected a <class 'NoneType'>") and dumps the whole section; the constructor's line says it
        reasons = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
        said = [r for r in reasons if not r.startswith("Expected a <class")]
        message = said[0] if said else message.splitlines()[0]
    return message


def _disk_full_message(error: BaseException) -> str:
    """A full disk met by a writer that does not raise DiskFullError: the file it names, and the free space."""
    from ..io.disk import free_bytes, human

    while error is not None and not (isinstance(error, OSError) and error.filename):
        error = error.__cause__ or error.__context__
    if error is None:
        return "no space left on the disk being written to: free some space or write elsewhere"
    return f"no space left for {error.filename}: {human(free_bytes(error.filename))} free on its disk"
