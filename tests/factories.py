"""Synthetic, schema-valid run reports (zmqlab.run/1) for every outcome (and the lab's 'infra'),
plus cells/verdicts.

    report = make_report("lost", cell=make_cell(pattern="pubsub"), lost_threads=(7,))
    verdict = make_verdict(["ok", "lost", "lost"], pattern="pubsub")

Each outcome carries the evidence a real run would: gaps for lost/misordered, stalled
thread states and stacks for deadlock, a reason for unsupported, a message for error.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

from lab.cells import Cell
from lab.matrix import Matrix, TargetRow, build
from lab.verdicts import Verdict, judge_runs, skipped

# Versions the pinned targets report (pins.toml); unknown names get a plausible default.
KNOWN_VERSIONS = {
    "pyzmq-25.1.2": {"pyzmq": "25.1.2", "libzmq": "4.3.4", "draft": False, "python": "3.11.2"},
    "pyzmq-26.4.0": {"pyzmq": "26.4.0", "libzmq": "4.3.5", "draft": False, "python": "3.11.2"},
    "pyzmq-27.3.0": {"pyzmq": "27.3.0", "libzmq": "4.3.5", "draft": False, "python": "3.11.2"},
}
DEFAULT_TARGET = "pyzmq-25.1.2"


def versions_for(target: str) -> dict:
    return dict(KNOWN_VERSIONS.get(target, {"pyzmq": "0.0.0", "libzmq": "4.3.5", "draft": False,
                                           "python": "3.11.2"}))


def target_rows(names: Iterable[str] = KNOWN_VERSIONS) -> tuple[TargetRow, ...]:
    return tuple(TargetRow(n, versions_for(n)["pyzmq"], versions_for(n)["libzmq"],
                           versions_for(n)["draft"]) for n in names)


def make_cell(target: str = DEFAULT_TARGET, pattern: str = "pubsub", transport: str = "tcp",
              variant: str = "default", poll: bool = False, sync: str = "none",
              threads: int = 4, msgs: int = 50) -> Cell:
    return Cell(target, pattern, transport, variant, poll, sync, threads, msgs)


def _thread(i: int, msgs: int, **changes) -> dict:
    t = {"id": i, "attempted": msgs, "completed": msgs, "received": msgs, "missing": 0,
         "duplicates": 0, "reorders": 0, "first_gap": None, "state": "done"}
    t.update(changes)
    return t


def make_report(outcome: str = "ok", cell: Cell | None = None, *,
                versions: dict | None = None,
                lost_threads: Sequence[int] = (1,), lost_first: int = 16,
                stuck_threads: Sequence[int] = (0,), stuck_state: str = "send",
                reason: str | None = None, error: str | None = None,
                duration_s: float = 0.5, stall_s: float = 5.0,
                classified_by: str | None = None, **param_changes) -> dict:
    """One run report of `cell` ending in `outcome`.

    lost:       each of `lost_threads` misses its first `lost_first` messages
                (first_gap: got #lost_first+1 expecting #1) -- the PUB/SUB slow-joiner shape
    misordered: each of `lost_threads` sees #6 before #5
    deadlock:   `stuck_threads` stall in `stuck_state`, the main loop in 'poll', stacks kept
    """
    cell = cell or make_cell()
    n, m = cell.threads, cell.msgs
    threads = [_thread(i, m) for i in range(n)]
    stall = None
    shutdown_received = True
    if outcome == "lost":
        for i in lost_threads:
            threads[i].update(received=m - lost_first, missing=lost_first,
                              first_gap={"expected": 1, "got": lost_first + 1})
    elif outcome == "misordered":
        for i in lost_threads:
            threads[i].update(reorders=1, first_gap={"expected": 5, "got": 6})
    elif outcome == "deadlock":
        for i in stuck_threads:
            threads[i].update(attempted=m // 2 + 1, completed=m // 2, received=m // 2,
                              missing=m - m // 2, state=stuck_state)
        stall = {"since_progress_s": stall_s,
                 "stacks": {"MainThread": 'File "scenarios/run.py", line 88, in main_loop\n  poller.poll()',
                            **{f"sender-{i}": f'File "scenarios/run.py", line 55, in {stuck_state}'
                               for i in stuck_threads}}}
        shutdown_received = False
    elif outcome == "unsupported":
        threads = []
        shutdown_received = False
    elif outcome == "error":
        threads = []
        shutdown_received = False
    elif outcome == "infra":        # made by the lab: the process never said its versions
        threads = []
        shutdown_received = False
        versions = versions if versions is not None else {
            "pyzmq": "", "libzmq": "", "draft": versions_for(cell.target)["draft"], "python": ""}
    elif outcome != "ok":
        raise ValueError(f"unknown outcome {outcome!r}")

    totals = {k: sum(t[k] for t in threads)
              for k in ("attempted", "completed", "received", "missing", "duplicates", "reorders")}
    totals["expected"] = n * m if threads else 0
    default_reason = {
        "ok": "every message arrived in order",
        "lost": f"{len(lost_threads)} thread(s) lost messages",
        "misordered": f"{len(lost_threads)} thread(s) saw messages out of order",
        "deadlock": f"no progress for {stall_s:g}s",
        "unsupported": "CLIENT/SERVER needs the draft API (this libzmq has none)",
        "error": "scenario raised ZMQError",
        "infra": "container zmqlab-test-pyzmq-25.1.2-ab12cd was killed from outside: exit 137, "
                 "OOMKilled=false; the run was made again in a fresh container",
    }[outcome]
    params = {"pattern": cell.pattern, "transport": cell.transport, "threads": n, "msgs": m,
              "poll": cell.poll, "sync": cell.sync, "variant": cell.variant, "sleep": 1.0,
              "stall": stall_s, "linger": 0, "rate": 0, "mutex": False, "nowait": False,
              "inject": None}
    params.update(param_changes)
    elapsed = duration_s + (stall_s if outcome == "deadlock" else 0)
    return {
        "schema": "zmqlab.run/1",
        "versions": versions if versions is not None else versions_for(cell.target),
        "params": params,
        "outcome": outcome,
        "reason": reason if reason is not None else default_reason,
        "classified_by": classified_by or {"deadlock": "watchdog", "infra": "lab"}.get(outcome, "harness"),
        "threads": threads,
        "totals": totals,
        "shutdown_received": shutdown_received,
        "duration_s": elapsed,
        "msgs_per_s": round(totals["received"] / elapsed, 1),
        "stall": stall,
        "error": (error or "ZMQError: Address already in use (addr='tcp://127.0.0.1:5555')")
        if outcome == "error" else None,
    }


def make_reports(outcomes: Iterable[str], cell: Cell | None = None, **kwargs) -> list[dict]:
    return [make_report(o, cell, **kwargs) for o in outcomes]


def make_verdict(outcomes: Iterable[str] | str, cell: Cell | None = None, **cell_fields) -> Verdict:
    """make_verdict(['ok', 'lost']) or make_verdict('skipped') for a skipped cell."""
    cell = cell or make_cell(**cell_fields)
    if outcomes == "skipped":
        return skipped(cell, "docker backend: image for this target could not be built")
    return judge_runs(cell, make_reports(outcomes, cell))


def make_matrix(spec: dict[tuple, Iterable[str] | str], run_id: str = "20261127-114501-ab12",
                backend: str = "local", targets: Sequence[str] | None = None, **params) -> Matrix:
    """spec: {(target, pattern, transport, variant, poll, sync): outcomes} -> a Matrix."""
    verdicts = []
    for (target, pattern, transport, *rest), outcomes in spec.items():
        fields = dict(zip(("variant", "poll", "sync"), rest))
        verdicts.append(make_verdict(outcomes, make_cell(target, pattern, transport, **fields)))
    names = targets if targets is not None else list(dict.fromkeys(k[0] for k in spec))
    return build(run_id, backend, verdicts, params={"runs": 3, "threads": 4, "msgs": 50, **params},
                 targets=target_rows(names), created="2026-11-27T11:45:01Z")


def mutated(data: dict, **changes) -> dict:
    """A deep copy of `data` with top-level keys changed (for invalid-document tests)."""
    out = copy.deepcopy(data)
    out.update(changes)
    return out


def make_fault_verdict(outcomes: Sequence[str], judged: Sequence[str], target: str = DEFAULT_TARGET,
                       pattern: str = "pushpull", fault: str = "reset:rx@1+1", promise: bool = True,
                       threads: int = 4, msgs: int = 50) -> Verdict:
    """A containers cell with `fault` whose i-th run ends in outcomes[i], judged judged[i]
    against libzmq's real promise for it (lab/expectations.py; none when `promise` is False),
    the `fault` block lab/fault_verdicts.judged puts in a report."""
    from lab import expectations
    from lab.faults import parse
    spec = parse(fault)
    cell = Cell(target, pattern, "tcp", threads=threads, msgs=msgs, topology="containers", fault=spec)
    found = expectations.expected_for(pattern, spec.kind, spec.target, (), versions_for(target)["libzmq"])
    reports = make_reports(outcomes, cell, topology="containers")
    for report, j in zip(reports, judged, strict=True):
        report["fault"] = {"judged": j, "why": "ok" if j == "expected" else "3 lost outside the fault window",
                           "explain": f"{spec.label}: 3 lost inside", "outcome": {},
                           "expectation": found.to_dict() if promise and found else None}
    return judge_runs(cell, reports)
