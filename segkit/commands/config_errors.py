"""Configuration errors in a line or two: the key, what is wrong with its value, and where it was set (a config
file and line, or the command line), with the nearest valid key for an unknown one. jsonargparse's own form is
the whole usage text (some 90 lines) before the message, which for a data set's options is itself a dozen lines
about union types."""

from __future__ import annotations

import difflib
import inspect
import re
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be read; the message says where."""


SECTIONS = ("seed_everything", "trainer", "model", "data", "checkpoint", "optimizer", "lr_scheduler", "ckpt_path")


def check_yaml(path: str) -> None:
    """A config file that is not valid YAML: :class:`ConfigError` naming the file, line and column."""
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        what = "; ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{where}: not valid YAML ({what})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def config_files(argv: list[str]) -> list[str]:
    """The config files named on the command line, in order (later ones override earlier ones)."""
    files = []
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else arg.partition("=")[2]
        if (arg in ("--config", "-c") or arg.startswith("--config=")) and Path(value).is_file():
            files.append(value)
    return files


UNKNOWN = (
    r"does not accept options? '(?P<full>[^']+)'|unrecognized arguments: --(?P<arg>\S+)"
    r"|Option '(?P<option>[^']+)' is not accepted|Key \"(?P<key>[^\"]+)\" is not expected"
)


def describe(message: str, argv: list[str]) -> str:
    """jsonargparse's error ``message`` for the command line ``argv``, in one line."""
    nested = [k for k in re.findall(r'Parser key "([^"]+)"', message) if k != "init_args"]
    unknown = re.search(UNKNOWN, message)
    if unknown:
        full = unknown.group("full") or unknown.group("arg")
        key = full.split("=")[0] if full else ".".join([*nested, unknown.group("option") or unknown.group("key")])
        return f"unknown key {key} ({where(key, argv)}){suggestion(key, argv)}"
    if not nested:
        return " ".join(message.split())
    key = ".".join(nested)
    # the line after the innermost key, or after the class the section names, says what is wrong
    lines = message.splitlines()
    anchors = (f'Parser key "{nested[-1]}"', "Problem with given class_path")
    anchor = max(i for i, line in enumerate(lines) if any(a in line for a in anchors))
    problem = next((line.strip(" -") for line in lines[anchor + 1 :] if line.strip()), lines[anchor])
    given = re.search(r"Given value: (.*)", message)
    if problem.startswith("Does not validate against any of the") and given:
        problem = f"{given.group(1)} is not an accepted value"
    problem = re.sub(r"<class '([\w.]+)'>", r"\1", problem).replace("Expected a ", "expected ")
    problem = re.sub(r"expected typing\.Literal\[(.*)\]", r"must be one of \1", problem)
    return f"{key}: {problem.replace('. Got value: ', ', got ')} ({where(key, argv)})"


def where(key: str, argv: list[str]) -> str:
    """Where ``key`` was set: ``on the command line``, or the last config file that sets it, with the line."""
    if any(a.lstrip("-").split("=")[0].replace(".init_args", "") == key for a in argv if a.startswith("--")):
        return "on the command line"
    for path in reversed(config_files(argv)):
        line = _line_of(path, key.split("."))
        if line:
            return f"{path}, line {line}"
    return "in the configuration"


def _line_of(path: str, keys: list[str]) -> int | None:
    """The line of the YAML key path ``keys`` in ``path``, looking through ``init_args`` of class sections."""
    try:
        node = yaml.compose(Path(path).read_text())
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        entries = {k.value: (k, v) for k, v in node.value}
        if key not in entries and "init_args" in entries:
            entries = {k.value: (k, v) for k, v in entries["init_args"][1].value}
        if key not in entries:
            return None
        name, node = entries[key]
        line = name.start_mark.line + 1
    return line


def suggestion(key: str, argv: list[str]) -> str:
    """``; did you mean X?`` with the nearest valid key of the same section, or nothing."""
    *section, name = key.split(".")
    candidates = _valid_keys(section[0] if section else None, argv)
    initials = "".join(word[0] for word in name.split("_") if word)
    near = [c for c in candidates if c == initials] or difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {'.'.join([*section, near[0]])}?" if near else ""


def _valid_keys(section: str | None, argv: list[str]) -> list[str]:
    from lightning.pytorch import Trainer

    from ..data import SegmentationDataModule
    from ..training.checkpoints import SegkitCheckpoint
    from ..training.task import SegmentationTask

    classes = {"model": SegmentationTask, "trainer": Trainer, "checkpoint": SegkitCheckpoint}
    if section is None:
        return list(SECTIONS)
    if section == "data":
        return _init_arguments(_data_class(argv) or SegmentationDataModule)
    return _init_arguments(classes[section]) if section in classes else []


def _init_arguments(cls: type) -> list[str]:
    """The keyword arguments of ``cls``, with those its ``**kwargs`` pass on to its base classes."""
    names = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names += [
            p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


def _data_class(argv: list[str]) -> type | None:
    """The DataModule class the configs name (``data.class_path``), if it can be imported."""
    import importlib

    for path in reversed(config_files(argv)):
        data = (yaml.safe_load(Path(path).read_text()) or {}).get("data")
        if isinstance(data, dict) and "class_path" in data:
            module, _, name = data["class_path"].rpartition(".")
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                return None
    return None
