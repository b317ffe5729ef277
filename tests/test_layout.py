"""DESIGN.md's import rules, checked on the source (``ast``, nothing imported): who may import whom, and no
import circle among the modules of ``annotator`` and ``jobs`` (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("annotator", "jobs")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in OURS for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only: never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(module: str) -> set[str]:
    """Our modules that ``module`` imports (a package's submodule when a name is one, else the package)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # "jobs.protocol.JobChannel" -> "jobs.protocol"
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in OURS and name != module:
                found.add(name)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _is(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# (who, allowed): a module matching ``who`` may import only modules matching one of ``allowed`` (and itself,
# and its own package's modules where the rule says so). The first matching rule applies.
RULES = [
    ("annotator.types", ()),
    ("annotator.geometry", ()),
    ("annotator.store.schema", ()),
    ("jobs.protocol", ()),
    ("annotator.users", ("annotator.types",)),
    ("annotator.login", ("annotator.users", "annotator.types")),
    ("annotator.pixels", ()),
    ("annotator.names", ("annotator.types",)),
    ("annotator.splits", ("annotator.types",)),
    ("annotator.classmap", ("annotator.types",)),
    ("annotator.checkpoints", ("annotator.types",)),
    ("annotator.overlay", ("annotator.types",)),
    ("annotator.video", ("annotator.types",)),
    ("annotator.health", ("annotator.types",)),
    ("annotator.label_errors", ("annotator.geometry", "annotator.edits")),
    ("annotator.ingest", ("annotator.types", "annotator.pixels", "annotator.phash", "annotator.video")),
    ("annotator.diskspace", ("annotator.types",)),
    ("annotator.edits", ()),
    ("annotator.sizing", ()),
    ("annotator.phash", ()),
    ("annotator.formats", ("annotator.types", "annotator.geometry", "annotator.formats")),
    ("annotator.store", ("annotator.types", "annotator.store")),
    ("annotator.services", ("annotator.types", "annotator.geometry", "annotator.names", "annotator.splits",
                            "annotator.classmap", "annotator.checkpoints", "annotator.overlay", "annotator.ingest",
                            "annotator.diskspace", "annotator.edits", "annotator.sizing", "annotator.pixels",
                            "annotator.phash", "annotator.video", "annotator.health", "annotator.label_errors",
                            "annotator.formats", "annotator.store", "annotator.settings", "annotator.users",
                            "annotator.demo.scenes", "annotator.services", "jobs.protocol", "jobs.queue",
                            "jobs.runtime")),
    ("annotator.ui", ("annotator.services", "annotator.types", "annotator.ui")),
    ("jobs", ("jobs", "annotator.types", "annotator.geometry", "annotator.formats", "annotator.settings",
              "annotator.diskspace", "annotator.pixels")),
]


def _rule(module: str):
    return next(((who, allowed) for who, allowed in RULES if _is(module, who)), None)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _rule(m)))
def test_imports_follow_design(module):
    who, allowed = _rule(module)
    bad = sorted(t for t in GRAPH[module] if not _is(t, *allowed))
    assert not bad, f"{module} ({who}) may import only {allowed or 'nothing of ours'}, but imports {bad}"


def test_ui_reaches_services_only_through_the_facade():
    for m in (m for m in MODULES if _is(m, "annotator.ui")):
        deep = sorted(t for t in GRAPH[m] if _is(t, "annotator.services") and t != "annotator.services")
        assert not deep, f"{m} imports service modules {deep}; use the Services facade"


def test_no_import_circle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_checker_sees_imports():
    """The rules above only mean something if the parser finds imports: spot-check known edges."""
    assert "annotator.types" in GRAPH["annotator.services.projects"]
    assert "jobs.protocol" in GRAPH["annotator.services.annotation"]
    assert "annotator.services.context" in GRAPH["annotator.services.projects"]
    assert any(_is(t, "annotator.store") for t in GRAPH["annotator.services.context"])


def test_nothing_outside_the_store_touches_its_connection():
    offenders = []
    for path in [*ROOT.joinpath("annotator").rglob("*.py"), *ROOT.joinpath("jobs").rglob("*.py"),
                 *ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]:
        if _is(_module_name(path), "annotator.store") or path == Path(__file__):
            continue
        if "._con" in path.read_text(encoding="utf-8"):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these reach into Store._con: {offenders}"
