"""The ``segkit`` command, also ``python -m segkit``. ``segkit --version`` and ``segkit configs`` answer here
without importing PyTorch (a second, not ten); every other command is :func:`segkit.cli.main`."""
from __future__ import annotations

import sys


def version() -> str:
    """segkit's version and those of what it runs on, for bug reports."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"
    return f"segkit {__version__} (torch {of('torch')}, lightning {of('lightning')}, Python {sys.version.split()[0]})"


def main(args: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if sys.argv and sys.argv[0].endswith("__main__.py"):  # run as `python -m segkit`: its usage lines say so
        sys.argv[0] = "python -m segkit"
    if argv[:1] in (["--version"], ["-V"]):
        print(version())
    elif argv[:1] == ["configs"]:
        from .config_files import main as configs

        try:
            configs(argv[1:])
        except (FileNotFoundError, FileExistsError) as e:
            sys.exit(f"segkit configs: {e}")
    else:
        from .cli import main as segkit

        segkit(argv)


if __name__ == "__main__":
    main()
