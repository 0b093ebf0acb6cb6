"""``segkit configs``: the configs bundled with segkit, one line each, or a copy of one to edit.

    segkit configs                           the bundled configs, one line each
    segkit configs voc --output my_voc.yaml  a copy to edit (never over an existing file)

Answers without importing PyTorch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import config_lookup
from .config_lookup import bundled_configs, description


def main(args: list[str]) -> None:
    try:
        write_or_list(args)
    except (FileNotFoundError, FileExistsError) as e:
        sys.exit(f"segkit configs: {e}")


def write_or_list(args: list[str]) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="segkit configs",
        description="List the configs bundled with segkit, or write a "
        "copy of one to edit. `--config NAME` uses a bundled config from any folder, unless a "
        "file NAME exists there (a local file always wins).",
    )
    parser.add_argument("name", nargs="?", default=None, help="a bundled config, e.g. voc or voc.yaml")
    parser.add_argument(
        "--output", default=None, help="where to write the copy (default NAME.yaml in the working folder; - prints it)"
    )
    cfg = parser.parse_args(args)
    configs = bundled_configs()
    if not configs:
        raise FileNotFoundError(
            f"no configs in {config_lookup.CONFIG_DIR}: this installation of segkit is incomplete, reinstall it"
        )
    if cfg.name is None:
        width = max(map(len, configs)) + len(".yaml")
        for name, path in configs.items():
            print(f"{name + '.yaml':<{width}}  {description(path)}")
        print(
            f"\n(in {config_lookup.CONFIG_DIR}; `segkit fit --config NAME.yaml` from any folder, where no file "
            "NAME.yaml is; `segkit configs NAME` writes a copy to edit)"
        )
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
