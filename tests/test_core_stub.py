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


def _stub_returns() -> dict[str, ast.expr]:
    """Each stub function's and method's return annotation, keyed by name or Class.name."""
    out = {}
    for node in ast.parse(STUB.read_text()).body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for n in members:
            if isinstance(n, ast.FunctionDef) and n.returns is not None:
                key = f"{node.name}.{n.name}" if isinstance(node, ast.ClassDef) else n.name
                out[key] = n.returns
    return out


_SIMPLE = {"Path": Path, "str": str, "int": int, "bool": bool, "bytes": bytes, "None": type(None)}


def _matches(value, ann: ast.expr) -> bool:
    """Whether ``value`` fits the annotation (the plain types, lists, tuples and unions)."""
    if isinstance(ann, ast.Constant) and ann.value is None:
        return value is None
    if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
        return _matches(value, ann.left) or _matches(value, ann.right)
    if isinstance(ann, ast.Name):
        return isinstance(value, _SIMPLE[ann.id])
    if isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name):
        args = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
        if ann.value.id == "list":
            return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
        if ann.value.id == "tuple":
            return (
                isinstance(value, tuple)
                and len(value) == len(args)
                and all(_matches(v, a) for v, a in zip(value, args, strict=True))
            )
    raise AssertionError(f"the test cannot check the annotation {ast.unparse(ann)}")


def test_stub_return_types_of_paths(tmp_path):
    # The engine hands back pathlib.Path for every path; the stub said str, so type-checked
    # callers were told .stat() or "/" did not exist.
    b = _core.IndexedDatasetBuilder(tmp_path / "a", "uint16")
    b.add_item_bytes(b"\x01\x00")
    b.end_document()
    returns = _stub_returns()
    finished = b.finish()
    assert _matches(finished, returns["IndexedDatasetBuilder.finish"]), finished
    ds = _core.IndexedDataset(tmp_path / "a")
    calls = {
        "IndexedDataset.bin_paths": lambda: ds.bin_paths,
        "IndexedDataset.idx_path": lambda: ds.idx_path,
        "merge_datasets": lambda: _core.merge_datasets(tmp_path / "m", [tmp_path / "a"]),
        "remove_stale_temps": lambda: _core.remove_stale_temps(tmp_path / "m"),
        "shared_temp_path": lambda: _core.shared_temp_path(tmp_path / "m"),
        "index_paths": lambda: _core.index_paths(tmp_path / "a", "train_0", 1, 2, 3),
        "num_samples_for": lambda: _core.num_samples_for(1, 1),
        "sampled_digest": lambda: _core.sampled_digest(tmp_path / "a.bin"),
    }
    for name, call in calls.items():
        value = call()
        assert _matches(value, returns[name]), (
            f"{name} returns {value!r}, but the stub says {ast.unparse(returns[name])}"
        )
