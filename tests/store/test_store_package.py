"""The store package keeps its shape: mechanism in ``__init__``, the schema as data, one mixin of query methods
per domain module, each method defined once, and no imports of ours beyond ``annotator.types``."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import annotator.store as store_pkg
from annotator.store import BOX_KINDS, MIGRATIONS, Store, utcnow

PKG = Path(store_pkg.__file__).parent
SHARED = {"__init__", "schema", "rows"}  # the modules that are not query modules
QUERY_MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in SHARED)
MECHANISM = {"open", "close", "transaction", "migrate", "schema_version", "explain", "checkpoint"}


def _mixins(name: str) -> list[type]:
    mod = importlib.import_module(f"annotator.store.{name}")
    return [c for _, c in inspect.getmembers(mod, inspect.isclass) if c.__module__ == mod.__name__]


def _own_methods(cls: type) -> set[str]:
    return {k for k, v in vars(cls).items()
            if not k.startswith("__") and (inspect.isfunction(v) or isinstance(v, (staticmethod, classmethod)))}


def _own_names(cls: type) -> set[str]:
    """Methods and class attributes (SORTS, _JOB_FIELDS ...): a second definition would silently win by MRO."""
    return {k for k in vars(cls) if not k.startswith("__")}


def test_the_package_has_the_query_modules_of_the_design():
    assert {"projects", "images", "boxes", "jobs", "models"} <= set(QUERY_MODULES)
    assert callable(utcnow) and "image_id" in BOX_KINDS and MIGRATIONS  # the names callers import still resolve


@pytest.mark.parametrize("name", QUERY_MODULES)
def test_each_query_module_is_one_mixin_that_store_inherits(name):
    classes = _mixins(name)
    assert len(classes) == 1, f"store/{name}.py should hold one mixin class, has {[c.__name__ for c in classes]}"
    (mixin,) = classes
    assert mixin in Store.__mro__, f"Store does not inherit {mixin.__name__}"
    public = {m for m in _own_methods(mixin) if not m.startswith("_")}
    assert public, f"{mixin.__name__} contributes no public method to Store"
    for m in public:
        assert getattr(Store, m) is getattr(mixin, m), f"Store.{m} is not {mixin.__name__}.{m}"


def test_no_name_is_defined_twice():
    seen: dict[str, str] = {}
    owners = [(name, _mixins(name)[0]) for name in QUERY_MODULES] + [("__init__", Store)]
    for module, cls in owners:
        for m in _own_names(cls):
            assert m not in seen, f"{m} is defined in store/{seen[m]}.py and store/{module}.py"
            seen[m] = module


def test_store_itself_holds_only_the_mechanism():
    public = {m for m in _own_methods(Store) if not m.startswith("_")}
    assert public == MECHANISM, f"query methods belong in a query module: {sorted(public - MECHANISM)}"


def _our_imports(path: Path) -> list[str]:
    """Modules of ours a file imports, as absolute names (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] in ("annotator", "jobs")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["annotator", "store"][: 2 - (node.level - 1)]
                out.append(".".join(base + ([node.module] if node.module else [])))
            elif (node.module or "").split(".")[0] in ("annotator", "jobs"):
                out.append(node.module)
    return out


def test_schema_imports_nothing_of_ours():
    assert _our_imports(PKG / "schema.py") == []


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_store_imports_only_types_and_itself(path):
    for mod in _our_imports(path):
        assert mod == "annotator.types" or mod.startswith("annotator.store"), f"{path.name} imports {mod}"


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= 400, f"{path.name}: split it along its sections"
