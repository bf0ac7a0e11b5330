"""Task signatures as plain data, so a worker can announce what it serves and a client check a call.

A spec is JSON: `{"params": [{"name": "a", "kind": "positional", "default": false, "type": "float"}, ...]}`
with kind one of positional, positional_only, keyword_only, var_positional, var_keyword, and type
one of the simple annotations the worker itself checks (int, float, str, bool, list, dict) or "".
`check_call` rebuilds the signature and applies the worker's own check (`Task.check_args`), so the
edge refuses exactly the calls the worker would refuse, before they are published.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from yadtq.errors import TaskArgumentError
from yadtq.task.registry import _SIMPLE_TYPES, Registry, Task

KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
_BY_NAME = {v: k for k, v in KINDS.items()}
_NO_DEFAULT = inspect.Parameter.empty
_SOME_DEFAULT = object()  # a rebuilt parameter's default: only whether it has one matters


def spec_of(task: Task) -> dict[str, Any]:
    params = []
    for p in task.signature.parameters.values():
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        params.append({"name": p.name, "kind": KINDS[p.kind], "default": p.default is not _NO_DEFAULT,
                       "type": ann if ann in _SIMPLE_TYPES else ""})
    spec: dict[str, Any] = {"params": params}
    if task.queue is not None:  # where clients that do not import the task send it
        spec["queue"] = task.queue
    return spec


def specs_of(registry: Registry) -> dict[str, dict[str, Any]]:
    """Every task of `registry`: name -> spec (what a worker announces)."""
    return {t.name: spec_of(t) for t in registry}


def signature_text(name: str, spec: Mapping[str, Any]) -> str:
    """`add(a: float, b: float)`, `fail(message: str = ...)`, `total(*xs: float)`."""
    parts = []
    for p in spec.get("params", []):
        star = "*" if p.get("kind") == "var_positional" else "**" if p.get("kind") == "var_keyword" else ""
        text = f"{star}{p.get('name')}" + (f": {p['type']}" if p.get("type") else "")
        parts.append(text + (" = ..." if p.get("default") else ""))
    return f"{name}({', '.join(parts)})"


def compile_spec(spec: Mapping[str, Any]) -> Task | None:
    """The spec as a task whose `check_args` is the worker's own check; None for a spec this
    version cannot read (a newer worker's): such a call passes, as the worker checks it anyway."""
    try:
        params = [inspect.Parameter(p["name"], _BY_NAME[p["kind"]],
                                    default=_SOME_DEFAULT if p.get("default") else _NO_DEFAULT,
                                    annotation=p.get("type") or _NO_DEFAULT)
                  for p in spec.get("params", [])]
        return Task(str(spec.get("name", "")), _never_called, signature=inspect.Signature(params))
    except (KeyError, TypeError, ValueError):
        return None


def check_call(name: str, spec: Mapping[str, Any], args: Sequence[Any], kwargs: Mapping[str, Any],
               compiled: Task | None = None) -> None:
    """Raises `TaskArgumentError` naming the signature when the call does not fit it.
    `compiled` is `compile_spec(spec)`, for callers that check many calls against one spec."""
    checker = compiled or compile_spec(spec)
    if checker is None:
        return
    try:
        checker.check_args(list(args), dict(kwargs))
    except TaskArgumentError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise TaskArgumentError(f"{signature_text(name, spec)}: {reason}") from None


def _never_called(*args: Any, **kwargs: Any) -> None:  # pragma: no cover - only the signature is used
    raise AssertionError("a rebuilt signature's task is never run")
