"""The committed baseline of expected verdicts (baseline/expected.json).

Some cells fail by design of ZeroMQ (PAIR sockets shared by threads deadlock, PUB/SUB loses
what is sent before the subscription arrives). A sweep that failed on those would always be
red, so the sweep gates on CHANGES against this file instead, with the same noise-aware
rules as `invoke compare` (lab.compare). The file keeps counts, not runs: enough for the
Wilson intervals, small enough to review in a diff.

Fault cells (`~<fault>` keys) lose by design too: a TCP reset under PUSH/PULL drops what was in
flight, and libzmq says so. Their entry adds `fault`: the promise the runs were judged against
(lab/expectations.py: scenario id, expected outcome, by_design, source URL; null when no source
speaks to the cell) and the runs per judgement (expected / unexpected / no-promise /
not-applied). The gate then passes a by-design loss that stays judged expected even where the
rates alone would call it worse, and fails a cell whose runs turn unexpected even at the same
outcome (lab.compare, "Fault cells"). Entries without `fault` (baselines from before it) are
judged on their rates alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lab import compare as cmp
from lab.cells import Cell
from lab.errors import LabError
from lab.matrix import Matrix
from lab.verdicts import OUTCOMES

BASELINE_SCHEMA = "zmqlab.baseline/1"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "baseline" / "expected.json"


@dataclass(frozen=True)
class Expected:
    cell: Cell
    side: cmp.Side


@dataclass(frozen=True)
class Baseline:
    source_run: str
    created: str
    backend: str
    params: dict
    cells: tuple[Expected, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.cell.target for e in self.cells))


def from_matrix(m: Matrix) -> dict:
    """The baseline document for a sweep. Skipped cells carry no expectation and are left out;
    an inconsistent verdict (a lab problem) must not become an expectation."""
    cells = []
    for v in m.verdicts:
        if v.worst == "skipped":
            continue
        if v.problems:
            raise LabError(f"cannot take a baseline from run {m.run_id}: {v.cell.key} is "
                           f"inconsistent ({v.problems[0]})")
        side = cmp.Side.of(v)
        entry = {"key": v.cell.key, "cell": v.cell.to_dict(), "outcome": v.worst, "n": v.n,
                 "counts": dict(v.counts), "note": side.note, "summary": v.summary_line()}
        if side.fault is not None:
            entry["fault"] = side.fault.to_dict()
        cells.append(entry)
    if not cells:
        raise LabError(f"cannot take a baseline from run {m.run_id}: every cell was skipped")
    params = {k: m.params[k] for k in ("threads", "msgs", "repeat", "stall", "sleep") if k in m.params}
    return {"schema": BASELINE_SCHEMA, "source_run": m.run_id, "created": m.created,
            "backend": m.backend, "params": params, "cells": cells}


def from_dict(data: dict, known_targets: Iterable[str], source: str = "baseline") -> Baseline:
    """`data` must satisfy baseline.schema.json. Every cell must still exist: its target in the
    pin file, its pattern/transport/variant known to lab.cells, its key what those give."""
    known = set(known_targets)
    gone, entries = [], []
    for c in data["cells"]:
        try:
            cell = Cell.from_dict(c["cell"])
            if cell.target not in known or cell.key != c["key"]:
                raise LabError("target not pinned or key mismatch")
        except LabError:
            gone.append(c["key"])
            continue
        fault = cmp.Judgement.from_dict(c["fault"]) if c.get("fault") else None
        side = cmp.Side(c["key"], c["outcome"], tuple((o, c["counts"].get(o, 0)) for o in OUTCOMES),
                        c["n"], cell.threads, cell.msgs, "", c["note"], fault)
        entries.append(Expected(cell, side))
    if gone:
        more = f" (+{len(gone) - 1} more)" if len(gone) > 1 else ""
        raise LabError(f"{source} lists cells that no longer exist: {gone[0]}{more}; "
                       "refresh it with `invoke baseline --results DIR`")
    keys = [e.side.key for e in entries]
    if len(set(keys)) != len(keys):
        raise LabError(f"{source} lists a cell twice: "
                       f"{next(k for k in keys if keys.count(k) > 1)}")
    return Baseline(data["source_run"], data["created"], data["backend"], dict(data["params"]),
                    tuple(entries))


def gate(baseline: Baseline, m: Matrix) -> cmp.Comparison:
    """The sweep against what is expected, cell by cell by key (pure). A baseline cell the
    sweep did not run, and a sweep cell the baseline does not know, are 'not-compared'."""
    expected = {e.side.key: e for e in baseline.cells}
    got = {v.cell.key: v for v in m.verdicts}
    pairs = []
    for key, e in expected.items():
        v = got.get(key)
        pairs.append((e.cell, e.side, cmp.Side.of(v) if v else None))
    for key, v in got.items():
        if key not in expected:
            pairs.append((v.cell, None, cmp.Side.of(v)))
    rows = {t: i for i, t in enumerate(dict.fromkeys(list(baseline.targets) + list(m.rows)))}
    pairs.sort(key=lambda p: (rows[p[0].target], p[0].order))
    return cmp.Comparison(f"baseline {baseline.source_run}", m.run_id, "key",
                          ",".join(rows), ",".join(rows),
                          cmp.compare_sides(((c.target,) + c.column, b, n) for c, b, n in pairs))
