"""The `_core.pyi` stub must describe the native module exactly: every public name and method
of one exists in the other."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pythia_data
from pythia_data import _core

STUB = Path(pythia_data.__file__).with_name("_core.pyi")
# Dunder methods the stub may declare that the runtime exposes under other names (or not at all).
IGNORED = {"__init__", "__buffer__", "__new__"}


def stub_names() -> dict[str, set[str] | None]:
    tree = ast.parse(STUB.read_text())
    out: dict[str, set[str] | None] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                n.name
                for n in node.body
                if isinstance(n, ast.FunctionDef) and n.name not in IGNORED
            }
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
    return out


def runtime_members(cls) -> set[str]:
    own = set(vars(cls))
    return {n for n in own if not n.startswith("_") or n in ("__len__", "__getitem__", "__iter__")}


def test_stub_matches_module():
    stub = stub_names()
    runtime = {n for n in dir(_core) if not n.startswith("_") or n == "__version__"}
    assert set(stub) == runtime, (
        f"in stub only: {set(stub) - runtime}; in module only: {runtime - set(stub)}"
    )
    for name, members in stub.items():
        obj = getattr(_core, name)
        if inspect.isclass(obj) and members is not None and not issubclass(obj, BaseException):
            assert members == runtime_members(obj), name
