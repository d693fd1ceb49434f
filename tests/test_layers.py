"""The package's layers (ARCHITECTURE.md): every import, function-level ones included, goes down
a layer; ``_plain`` and ``_fast`` never import each other; fast strategy modules import only the
shared ``_fast`` building blocks; and no import cycle is left."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastbp"

#: Module (dotted, below ``fastbp``) → layer.  ``_plain.*`` and ``_fast.*`` are both layer 2.
LAYERS = {
    "errors": 0,
    "_jit": 0,
    "_blas": 0,
    "_busy": 0,
    "params": 0,
    "vmath": 1,
    "activations": 1,
    "losses": 1,
    "steps": 1,
    "_validation": 1,
    "_plain": 2,
    "_fast": 2,
    "_dispatch": 3,
    "kernels": 4,
    "reference": 4,
    "optimizers": 4,
    "io": 5,
    "network": 5,
    "estimators": 5,
    "testing": 6,
    "datasets": 6,
    "_argtypes": 6,
    "bench": 6,
    "cli": 6,
    "_compile_beside": 6,
    "conformance": 6,
    "__main__": 7,
    "__init__": 7,
}

#: The shared building blocks of the fast package (the only ``_fast`` modules a strategy imports).
FAST_SHARED = {"_fast", "_fast._common", "_fast._passes", "_fast._columns", "_fast._tiles"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """The fastbp modules ``path`` imports (dotted, below ``fastbp``), wherever the import stands
    (``source``: the text to read instead of the file's)."""
    name = _module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if path.name == "__init__.py" and name == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fastbp."):
                    found.add(alias.name[len("fastbp.") :])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else list(package)
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("fastbp"):
                target = node.module[len("fastbp.") :] if node.module != "fastbp" else ""
            else:
                continue
            if node.module is None or target == "" or target in ("_plain", "_fast"):
                # ``from . import x`` / ``from fastbp import x``: the names may be modules
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target else alias.name
                    found.add(
                        sub
                        if (PACKAGE / Path(*sub.split("."))).with_suffix(".py").exists()
                        or (PACKAGE / Path(*sub.split("."))).is_dir()
                        else target
                    )
            else:
                found.add(target)
    found.discard("")
    found.discard(name)
    return found


def _layer(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYERS, f"fastbp/{module}: give it a layer in tests/test_layers.py (and ARCHITECTURE.md)"
    return LAYERS[top]


MODULES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {_module_name(p): _imports(p) for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_a_layer(path):
    name = _module_name(path)
    for target in GRAPH[name]:
        if name in ("__init__", "__main__"):
            continue
        assert _layer(target) <= _layer(name), (
            f"fastbp/{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_plain_and_fast_stay_apart(path):
    name = _module_name(path)
    top = name.split(".")[0]
    for target in GRAPH[name]:
        if top == "_plain":
            assert not target.startswith("_fast"), f"fastbp/{name} imports {target}"
        if top == "_fast":
            assert not target.startswith("_plain"), f"fastbp/{name} imports {target}"
            if name not in FAST_SHARED and target.startswith("_fast"):
                assert target in FAST_SHARED, f"fastbp/{name}: a fast strategy imports another ({target})"


def test_no_import_cycle():
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node) :] + [node]))
        if node in seen:
            return
        stack.append(node)
        for nxt in GRAPH.get(node, ()):
            if nxt in GRAPH:
                visit(nxt)
        stack.pop()
        seen.add(node)

    for module in GRAPH:
        if module != "__init__":
            visit(module)


def test_the_walker_sees_function_level_imports():
    """The test would catch an upward import hidden inside a function, relative or absolute."""
    top = "def f():\n    from .network import MLP\n    from . import cli\n    import fastbp.bench\n"
    assert {"network", "cli", "bench"} <= _imports(PACKAGE / "steps.py", top)
    nested = "def f():\n    from ..network import MLP\n    from .._fast import sgd\n"
    assert {"network", "_fast.sgd"} <= _imports(PACKAGE / "_plain" / "loops.py", nested)
