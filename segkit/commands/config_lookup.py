"""The configs that ship with segkit (``configs/*.yaml`` of the repository, ``segkit/configs/`` inside the wheel)
and how ``--config`` finds them.

``--config VALUE`` is a path, as LightningCLI takes it. Only when no file ``VALUE`` exists and ``VALUE`` is a bare
name (``voc`` or ``voc.yaml``: no folder in it) of a bundled config is the bundled file used instead; a file of
the same name in the working folder therefore always wins. Anything else that names no file is an error that
lists the bundled names. Paths written inside a config (``data.root: data/synthetic_voc``) stay relative to the
working folder, wherever the config itself lives.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# an installed wheel holds them inside the package; a source checkout (and its editable install) at its top level
CONFIG_DIR = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs"


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
        raise FileNotFoundError(
            f"--config {value}: no such file here and no bundled config of that name "
            f"(bundled: {names}; `segkit configs` lists them)"
        )
    base = os.path.basename(value)
    hint = (
        f"; segkit's own {base} is `--config {base}`"
        if base.endswith(".yaml") and base.removesuffix(".yaml") in configs
        else ""
    )
    raise FileNotFoundError(f"--config {value}: no such file{hint} (bundled configs: {names})")


def config_sources(paths) -> list[str]:
    """One line per config file a run read: the bundled ones by name (and the segkit version that shipped them),
    the others by absolute path. For the header of the run's saved ``config.yaml``."""
    from ..version import __version__

    lines = []
    for path in paths or []:
        if path is None:  # a config given inline, as text
            lines.append("--config given inline on the command line")
            continue
        path = os.path.abspath(str(path))
        lines.append(
            f"--config {Path(path).name}: the config bundled with segkit {__version__} ({path})"
            if is_bundled(path)
            else f"--config {path}"
        )
    return lines
