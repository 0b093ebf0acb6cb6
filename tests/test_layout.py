"""The package's architecture, as the README's "Project layout" draws it: floors that import only from their own
floor or below, no import cycles, no file over 300 lines."""
import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "segkit"

# lowest floor first; a module not listed here makes the test fail, so that each new module gets a floor
FLOORS = [
    ("foundations", ["segkit.models", "segkit.metrics", "segkit.distributed", "segkit.tf_checkpoint",
                     "segkit.checkpoint_file", "segkit.optim", "segkit.config_files"]),
    ("data", ["segkit.data"]),
    ("inference", ["segkit.inference"]),
    ("shared", ["segkit.task", "segkit.wandb", "segkit.options", "segkit.checkpointing",
                "segkit.losses"]),
    ("commands", ["segkit.evaluate", "segkit.predict", "segkit.export", "segkit.summary", "segkit.convert", "segkit.loggers",
                  "segkit.callbacks"]),
    ("entry", ["segkit.cli", "segkit.__main__"]),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    if module == "segkit":  # the package itself: its version, nothing imported
        return 0
    for i, (_, prefixes) in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} has no floor in tests/test_layout.py (and the README's project layout)")


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
                base = base[:len(base) - node.level + 1]
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


def test_nothing_imports_from_a_floor_above():
    upward = [f"{m} ({FLOORS[_floor(m)][0]}) imports {d} ({FLOORS[_floor(d)][0]})"
              for m, deps in _graph().items() if m != "segkit" for d in deps if _floor(d) > _floor(m)]
    assert not upward, upward


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in graph.get(module, ()):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [module, dep]))
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_no_file_over_300_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


def test_the_checker_reads_relative_and_function_level_imports():
    assert {"segkit.data.datamodule", "segkit.data.sampling"} <= _imports(PACKAGE / "data" / "check.py")
    assert {"segkit.evaluate", "segkit.predict", "segkit.export", "segkit.wandb"} <= _imports(PACKAGE / "cli.py")
    assert "segkit.distributed" in _imports(PACKAGE / "data" / "sampling.py")  # `from ..distributed import`
