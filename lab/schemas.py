"""The JSON contracts (lab/schemas/*.schema.json) and one-line validation against them.

Schemas refer to each other by relative $ref ("run.schema.json"), resolved through a
registry keyed by their $id, so a verdict file is checked down to every embedded run report.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from lab.errors import LabError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
KINDS = ("run", "verdict", "matrix", "baseline", "reproduce", "interop")
# The `schema` field value each kind of document must carry.
SCHEMA_IDS = {kind: f"zmqlab.{kind}/1" for kind in KINDS}


def schema_path(kind: str) -> Path:
    if kind not in KINDS:
        raise LabError(f"unknown document kind {kind!r} (known: {', '.join(KINDS)})")
    return SCHEMA_DIR / f"{kind}.schema.json"


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    path = schema_path(kind)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabError(f"cannot read schema {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise LabError(f"schema {path} is not valid JSON: line {exc.lineno} column {exc.colno}") from None


@lru_cache(maxsize=None)
def _validator(kind: str):
    try:
        import jsonschema
        from referencing import Registry, Resource
    except ImportError:   # the host-side lab needs it; scenarios (inside targets) never import this
        raise LabError("the 'jsonschema' package is needed to check results: pip install jsonschema") from None
    registry = Registry().with_resources(
        (load_schema(k)["$id"], Resource.from_contents(load_schema(k))) for k in KINDS)
    cls = jsonschema.validators.validator_for(load_schema(kind))
    return cls(load_schema(kind), registry=registry)


def problems(kind: str, data: object) -> list[str]:
    """Every schema violation as 'where: what', the most telling one (best_match) first."""
    from jsonschema.exceptions import best_match, relevance
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return []
    first = best_match(errors)                    # may descend into a oneOf/anyOf context
    top = max(errors, key=relevance)              # ...of this one, which it replaces
    rest = [e for e in errors if e is not top]
    return [f"{_where(e)}: {_short(e.message)}" for e in [first, *rest]]


def validate(kind: str, data: object, source: str | Path | None = None) -> None:
    """Raise LabError('<source> does not match <kind>.schema.json: <where>: <what>') if invalid."""
    found = problems(kind, data)
    if found:
        name = str(source) if source is not None else f"{kind} document"
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise LabError(f"{name} does not match {schema_path(kind).name}: {found[0]}{more}")


def _where(error) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "top level"


def _short(message: str, limit: int = 160) -> str:
    """Messages quote the offending instance, which can be a whole run report."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
