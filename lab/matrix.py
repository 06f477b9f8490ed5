"""Matrix: the verdicts of one sweep, laid out as rows = targets, columns = cells.

A row is a cell's `row`: its target, or 'SENDER>RECEIVER' for a pair of two pins (containers
topology), so a pair never shares a slot with its receiver's own cell.

Rows follow the pin file order (what the user sees in pins.toml); columns follow the
canonical cell order (lab.cells), so two sweeps of the same thing always line up.
Merging exists for CI, where each target is swept by its own job and the per-target
matrices are joined afterwards: identical verdicts may meet, differing ones are a conflict.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

from lab.errors import LabError
from lab.verdicts import VERDICT_OUTCOMES, Verdict, worst_of

MATRIX_SCHEMA = "zmqlab.matrix/1"
Column = tuple[str, str, str]          # (pattern, transport, label)


@dataclass(frozen=True)
class TargetRow:
    """What the pin file says about a row; measured versions (from runs) take precedence."""
    name: str
    pyzmq: str = ""
    libzmq: str = ""
    draft: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "pyzmq": self.pyzmq, "libzmq": self.libzmq, "draft": self.draft}


@dataclass(frozen=True)
class Matrix:
    run_id: str
    created: str                       # ISO 8601, UTC
    backend: str
    verdicts: tuple[Verdict, ...]
    params: dict = field(hash=False)   # sweep parameters: runs, stall, sleep, threads, msgs, ...
    targets: tuple[TargetRow, ...] = ()

    # ---- axes ------------------------------------------------------------------------
    @property
    def rows(self) -> tuple[str, ...]:
        """Target names: pinned rows first (pin order), then any other row with verdicts
        (pairs of two pins, 'SENDER>RECEIVER', after the pins)."""
        names = [t.name for t in self.targets] + [v.cell.row for v in self.verdicts]
        return tuple(dict.fromkeys(names))

    @property
    def columns(self) -> tuple[Column, ...]:
        order = {}
        for v in self.verdicts:
            order.setdefault(v.cell.column, v.cell.order)
        return tuple(sorted(order, key=order.__getitem__))

    def lookup(self, row: str, column: Column) -> Verdict | None:
        return self._index.get((row, tuple(column)))

    def get(self, key: str) -> Verdict | None:
        """By cell key, e.g. 'pyzmq-25.1.2/pubsub/tcp/default+poll'."""
        return next((v for v in self.verdicts if v.cell.key == key), None)

    def row(self, target: str) -> tuple[Verdict | None, ...]:
        return tuple(self.lookup(target, c) for c in self.columns)

    def row_versions(self, target: str) -> TargetRow:
        """Versions for a row: as measured by its runs if any ran, else as pinned."""
        for v in self.verdicts:
            if v.cell.target == target and v.versions:
                return TargetRow(target, v.versions["pyzmq"], v.versions["libzmq"], v.versions["draft"])
        return next((t for t in self.targets if t.name == target), TargetRow(target))

    @cached_property
    def _index(self) -> dict:
        return {(v.cell.row, v.cell.column): v for v in self.verdicts}

    @property
    def partial(self) -> bool:
        """An interrupted run (`complete: false`): some planned cells have no verdict."""
        return self.params.get("complete") is False

    @property
    def planned(self) -> int:
        return len(self.params.get("plan") or ()) or len(self.verdicts)

    # ---- totals ------------------------------------------------------------------------
    def tally(self) -> dict[str, int]:
        """How many cells ended in each verdict outcome."""
        tally = dict.fromkeys(VERDICT_OUTCOMES, 0)
        for v in self.verdicts:
            tally[v.worst] += 1
        return tally

    @property
    def worst(self) -> str | None:
        return worst_of(v.worst for v in self.verdicts) if self.verdicts else None

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.failed)

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": MATRIX_SCHEMA,
            "run_id": self.run_id,
            "created": self.created,
            "backend": self.backend,
            "params": self.params,
            "targets": [t.to_dict() for t in self.targets],
            "verdicts": [v.to_dict() for v in self.verdicts],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Matrix":
        """`data` must satisfy matrix.schema.json (lab.schemas.validate('matrix', ...))."""
        return build(run_id=data["run_id"], created=data["created"], backend=data["backend"],
                     verdicts=[Verdict.from_dict(v) for v in data["verdicts"]],
                     params=data["params"],
                     targets=[TargetRow(**t) for t in data["targets"]])


def _target_row(target: object) -> TargetRow:
    if isinstance(target, TargetRow):
        return target
    if isinstance(target, str):
        return TargetRow(target)
    # lab.targets.Target (duck-typed so the matrix does not depend on the pin loader)
    return TargetRow(target.name, target.pyzmq, target.libzmq, target.draft)


def build(run_id: str, backend: str, verdicts: Iterable[Verdict], params: dict | None = None,
          targets: Sequence[object] = (), created: str = "") -> Matrix:
    """A matrix with verdicts in row-then-column order; a cell judged twice is an error.

    `targets` (Target, TargetRow or names, in pin order) fixes the row order and lets a row
    show its pinned versions even when every cell of it was skipped.
    """
    rows = tuple(dict.fromkeys(_target_row(t) for t in targets))
    verdicts = tuple(verdicts)
    seen: set[str] = set()
    for v in verdicts:
        if v.cell.key in seen:
            raise LabError(f"cell {v.cell.key} appears twice in run {run_id}")
        seen.add(v.cell.key)
    row_order = {name: i for i, name in enumerate(dict.fromkeys(
        [t.name for t in rows] + [v.cell.row for v in verdicts]))}
    ordered = tuple(sorted(verdicts, key=lambda v: (row_order[v.cell.row], v.cell.order)))
    return Matrix(run_id=run_id, created=created, backend=backend, verdicts=ordered,
                  params=dict(params or {}), targets=rows)


def merge(matrices: Sequence[Matrix], run_id: str | None = None, created: str | None = None) -> Matrix:
    """Join matrices (e.g. one per target from CI jobs) into one.

    Conflicts are errors: the same cell with different verdicts, the same target pinned with
    different versions, or a sweep parameter with different values (list-valued parameters,
    such as the target list, are joined instead). Defaults: the latest run id and time.
    """
    if not matrices:
        raise LabError("nothing to merge")
    by_key: dict[str, tuple[Verdict, str]] = {}
    for m in matrices:
        for v in m.verdicts:
            if v.cell.key in by_key:
                other, other_run = by_key[v.cell.key]
                if other.to_dict() != v.to_dict():
                    raise LabError(f"cannot merge: {v.cell.key} is {other.worst} in run {other_run} "
                                   f"but {v.worst} in run {m.run_id}")
                continue
            by_key[v.cell.key] = (v, m.run_id)
    rows: dict[str, TargetRow] = {}
    for m in matrices:
        for t in m.targets:
            if t.name in rows and rows[t.name] != t:
                raise LabError(f"cannot merge: target {t.name} is pinned differently in run {m.run_id}")
            rows.setdefault(t.name, t)
    params: dict = {}
    for m in matrices:
        for name, value in m.params.items():
            if name not in params:
                params[name] = list(value) if isinstance(value, list) else value
            elif isinstance(value, list) and isinstance(params[name], list):
                params[name] += [x for x in value if x not in params[name]]
            elif params[name] != value:
                raise LabError(f"cannot merge: parameter {name} is {params[name]!r} in one run "
                               f"and {value!r} in run {m.run_id}")
    # Merging merged matrices keeps the original run ids, not the intermediate ones.
    params["merged_from"] = list(dict.fromkeys(
        r for m in matrices for r in (m.params.get("merged_from") or [m.run_id])))
    backends = list(dict.fromkeys(m.backend for m in matrices))
    latest = max(matrices, key=lambda m: (m.created, m.run_id))
    return build(run_id=run_id or latest.run_id, backend="+".join(backends),
                 verdicts=[v for v, _ in by_key.values()], params=params,
                 targets=tuple(rows.values()), created=created or latest.created)

