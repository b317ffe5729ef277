"""Class mapping: a model's (or an imported dataset's) class names onto a project's class table, the user's
overrides, and a label typed or shown in the editor back to a class index.

Pure: imports only ``types``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from .types import UserError

SKIP = "skip"  # an override value meaning "drop this model class"
_CONF_SUFFIX = re.compile(r"^(.*\S)\s+(?:0(?:\.\d+)?|1(?:\.0+)?)$")


def _norm(name: str) -> str:
    """The comparison key for class names: trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(str(name).split()).casefold()


def match_classes(model_names: Sequence[str], project_names: Sequence[str]) -> dict[int, int | None]:
    """Model class index -> project class index for classes whose names match (case- and
    whitespace-insensitive); unmatched model classes map to None."""
    lookup: dict[str, int] = {}
    for j, pname in enumerate(project_names):
        lookup.setdefault(_norm(pname), j)
    return {i: lookup.get(_norm(mname)) for i, mname in enumerate(model_names)}


def apply_overrides(
    mapping: Mapping[int, int | None],
    overrides: Mapping[int | str, int | str | None],
    project_names: Sequence[str],
    model_names: Sequence[str] | None = None,
) -> dict[int, int | None]:
    """Return a copy of ``mapping`` with the user's choices applied.

    Keys: a model class index (int, or a digit string as JSON keys are) or a model class name (needs
    ``model_names``). Values: a project class index, a project class name, or None / "skip" / "" to drop
    that model class. Every unknown name or out-of-range index is reported in one UserError.
    """
    result = {int(k): v for k, v in mapping.items()}
    model_lookup: dict[str, int] = {}
    for i, mname in enumerate(model_names or ()):
        model_lookup.setdefault(_norm(mname), i)
    project_lookup: dict[str, int] = {}
    for j, pname in enumerate(project_names):
        project_lookup.setdefault(_norm(pname), j)

    unknown_model: list[str] = []
    unknown_project: list[str] = []
    resolved: dict[int, int | None] = {}
    for key, value in overrides.items():
        idx = _model_index(key, model_lookup, result)
        if idx is None:
            unknown_model.append(repr(key))
            continue
        target, ok = _project_index(value, project_lookup, len(project_names))
        if not ok:
            unknown_project.append(repr(value))
            continue
        resolved[idx] = target

    problems = []
    if unknown_model:
        known = ", ".join(repr(n) for n in model_names) if model_names else f"indices 0-{len(result) - 1}"
        problems.append(f"unknown model class(es) {', '.join(unknown_model)} (the model has {known})")
    if unknown_project:
        known = ", ".join(repr(n) for n in project_names)
        problems.append(
            f"unknown project class(es) {', '.join(unknown_project)} (the project has {known}; use 'skip' to drop)"
        )
    if problems:
        raise UserError("Class mapping: " + "; ".join(problems))
    result.update(resolved)
    return result


def _model_index(key: Any, lookup: dict[str, int], mapping: dict[int, Any]) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key if key in mapping else None
    if isinstance(key, str):
        if _norm(key) in lookup:
            return lookup[_norm(key)]
        if key.strip().isdigit() and int(key) in mapping:
            return int(key)
    return None


def _project_index(value: Any, lookup: dict[str, int], count: int) -> tuple[int | None, bool]:
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return (value, True) if 0 <= value < count else (None, False)
    if isinstance(value, str):
        key = _norm(value)
        if key in ("", SKIP):
            return None, True
        if key in lookup:
            return lookup[key], True
        if key.isdigit() and int(key) < count:
            return int(key), True
    return None, False


def label_to_class(label: str, class_names: Sequence[str]) -> int:
    """A label -> class index: the name itself, or a name followed by a confidence ("car 0.87");
    case-insensitive as a last resort. UserError naming the label otherwise."""
    text = (label or "").strip()
    exact = {n: i for i, n in enumerate(class_names)}
    if text in exact:
        return exact[text]
    m = _CONF_SUFFIX.match(text)
    if m and m.group(1) in exact:
        return exact[m.group(1)]
    folded = {n.casefold(): i for i, n in enumerate(class_names)}
    for t in (text, m.group(1) if m else None):
        if t is not None and t.casefold() in folded:
            return folded[t.casefold()]
    if not text:
        raise UserError("A box has no class: pick one for it")
    raise UserError(f"Unknown class {text!r}: the project's classes are {', '.join(class_names)}")
