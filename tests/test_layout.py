"""The package's one layering rule: nothing imports the commands package (``segkit.commands``, where every
``segkit X`` command parses its arguments) except ``python -m segkit``'s ``__main__``, and there are no import
cycles. The library itself parses no arguments and never exits the process."""

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "segkit"
COMMANDS = "segkit.commands"
ENTRY = "segkit.__main__"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The segkit modules ``path`` imports, at any depth of its code (imports inside functions count)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("segkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("segkit"):
                continue
            for alias in node.names:  # `from . import evaluate` imports the module segkit.evaluate
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return {m for m in found if m != module}


def _exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _is_command(module: str) -> bool:
    return module == COMMANDS or module.startswith(COMMANDS + ".")


def test_nothing_in_the_library_imports_the_commands():
    found = [
        f"{m} imports {d}"
        for m, deps in _graph().items()
        if not _is_command(m) and m != ENTRY
        for d in deps
        if _is_command(d)
    ]
    assert not found, found


def test_the_library_parses_no_arguments_and_never_exits():
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if _is_command(module) or module == ENTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name in ("exit", "ArgumentParser", "CLI", "LightningCLI", "argv"):
                found.append(f"{module}:{node.lineno} uses {name}")
    assert not found, found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [node, dep] if dep in path else [node, dep]
            if dep not in state and (found := visit(dep, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_reads_relative_and_function_level_imports():
    assert {"segkit.data.datamodule", "segkit.data.sampling"} <= _imports(PACKAGE / "data" / "check.py")
    assert "segkit.distributed" in _imports(PACKAGE / "data" / "sampling.py")  # `from ..distributed import`
    # `from . import x` names the module x; imports inside functions count
    assert {"segkit.commands.config_lookup", "segkit.training.checkpoints"} <= _imports(
        PACKAGE / "commands" / "__init__.py"
    )
    assert {"segkit.data.check", "segkit.training.losses"} <= _imports(PACKAGE / "commands" / "data.py")
    assert _imports(PACKAGE / "__main__.py") == {"segkit.commands"}


def _unit(module: str) -> str:
    """The package (``segkit.evaluation``) or top-level module (``segkit.head``) that ``module`` belongs to."""
    return ".".join(module.split(".")[:2])


def test_no_package_imports_one_that_imports_it_back():
    """Packages layer as modules do: ``segkit.inference`` may use ``segkit.io``, but then nothing in ``segkit.io``
    uses ``segkit.inference`` (an exported file's metadata is read by inference and written by export: it is a
    file format in io, below both)."""
    edges: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        if module == "segkit":
            continue
        for dep in deps:
            if dep != "segkit" and _unit(dep) != _unit(module):
                edges.setdefault(_unit(module), set()).add(_unit(dep))
    cycle = _cycle(edges)
    assert cycle is None, "packages importing each other: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) in (["a", "b", "c", "a"], ["b", "c", "a", "b"])
    assert _cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None
