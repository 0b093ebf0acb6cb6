"""The configs that ship inside the package (``segkit/configs/*.yaml``) and how ``--config`` finds them.

``--config VALUE`` is a path, as LightningCLI takes it. Only when no file ``VALUE`` exists and ``VALUE`` is a bare
name (``voc`` or ``voc.yaml``: no folder in it) of a bundled config is the bundled file used instead; a file of
the same name in the working folder therefore always wins. Anything else that names no file is an error that
lists the bundled names. Paths written inside a config (``data.root: data/synthetic_voc``) stay relative to the
working folder, wherever the config itself lives.

    segkit configs                           the bundled configs, one line each
    segkit configs voc --output my_voc.yaml  a copy to edit (never over an existing file)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def bundled_configs() -> dict[str, Path]:
    """``{name: path}`` of the configs in the package, by name (the file name without ``.yaml``)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"))}


def is_bundled(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the bundled configs."""
    resolved = Path(path).resolve()
    return resolved.parent == CONFIG_DIR and resolved.suffix == ".yaml"


def description(path: Path) -> str:
    """A config's first comment line: what it trains, on what."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def _is_inline(value: str) -> bool:
    """jsonargparse also takes the config itself as the value (``--config '{trainer: {max_steps: 5}}'``)."""
    return any(c in value for c in ":{}\n")


def resolve(value: str) -> str:
    """The file ``--config value`` means: ``value`` itself when it exists (or is an inline config), else the
    bundled config of that name. :class:`FileNotFoundError` (one line, with the bundled names) otherwise."""
    if os.path.exists(value) or _is_inline(value):
        return value
    configs = bundled_configs()
    names = ", ".join(configs)
    if not os.path.dirname(value):  # a bare name
        if not value.endswith(".yaml") and os.path.exists(value + ".yaml"):
            return value + ".yaml"  # `--config voc` with a voc.yaml here: the local file wins here too
        if value.removesuffix(".yaml") in configs:
            return str(configs[value.removesuffix(".yaml")])
        raise FileNotFoundError(f"--config {value}: no such file here and no bundled config of that name "
                                f"(bundled: {names}; `segkit configs` lists them)")
    base = os.path.basename(value)
    hint = f"; segkit's own {base} is `--config {base}`" if base.endswith(".yaml") and \
        base.removesuffix(".yaml") in configs else ""
    raise FileNotFoundError(f"--config {value}: no such file{hint} (bundled configs: {names})")


def resolve_argv(argv: list[str]) -> list[str]:
    """The command line with every ``--config``/``-c`` value resolved by :func:`resolve`."""
    out, expect_value = [], False
    for arg in argv:
        if expect_value:
            out.append(resolve(arg))
            expect_value = False
        elif arg in ("--config", "-c"):
            out.append(arg)
            expect_value = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve(arg[len("--config="):]))
        else:
            out.append(arg)
    return out


def config_sources(paths) -> list[str]:
    """One line per config file a run read: the bundled ones by name (and the segkit version that shipped them),
    the others by absolute path. For the header of the run's saved ``config.yaml``."""
    from . import __version__

    lines = []
    for path in paths or []:
        if path is None:  # a config given inline, as text
            lines.append("--config given inline on the command line")
            continue
        path = os.path.abspath(str(path))
        lines.append(f"--config {Path(path).name}: the config bundled with segkit {__version__} ({path})"
                     if is_bundled(path) else f"--config {path}")
    return lines


def main(args: list[str]) -> None:
    """``segkit configs [NAME [--output FILE]]``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="segkit configs", description="List the configs bundled with segkit, or write a "
                            "copy of one to edit. `--config NAME` uses a bundled config from any folder, unless a "
                            "file NAME exists there (a local file always wins).")
    parser.add_argument("name", nargs="?", default=None, help="a bundled config, e.g. voc or voc.yaml")
    parser.add_argument("--output", default=None,
                        help="where to write the copy (default NAME.yaml in the working folder; - prints it)")
    cfg = parser.parse_args(args)
    configs = bundled_configs()
    if not configs:
        raise FileNotFoundError(f"no configs in {CONFIG_DIR}: this installation of segkit is incomplete, reinstall it")
    if cfg.name is None:
        width = max(map(len, configs)) + len(".yaml")
        for name, path in configs.items():
            print(f"{name + '.yaml':<{width}}  {description(path)}")
        print(f"\n(in {CONFIG_DIR}; `segkit fit --config NAME.yaml` from any folder, where no file NAME.yaml is; "
              "`segkit configs NAME` writes a copy to edit)")
        return
    stem = cfg.name.removesuffix(".yaml")
    if stem not in configs:
        raise FileNotFoundError(f"no bundled config {cfg.name} (bundled: {', '.join(configs)})")
    text = configs[stem].read_text()
    if cfg.output == "-":
        sys.stdout.write(text)
        return
    output = Path(cfg.output or f"{stem}.yaml")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(output, "x") as f:  # never over an existing file
            f.write(text)
    except FileExistsError:
        raise FileExistsError(f"{output} exists; give another --output (nothing was written)") from None
    note = " (this local file now wins over the bundled one)" if output.name == f"{stem}.yaml" else ""
    print(f"wrote {output}, a copy of the bundled {stem}.yaml: segkit fit --config {output}{note}")
