"""Verdicts: N run reports of one cell judged together.

The run reports themselves are the product (they carry the per-thread evidence and the
stacks of a stall), so a verdict keeps every report whole and derives everything else
(counts, worst outcome, failure rate with its Wilson interval, the one-line summary) from
them. Nothing derived is stored, so a verdict can never disagree with its own evidence.

A run lost to the infrastructure (outcome 'infra': its container killed, paused or removed
from outside, an engine error) is kept as evidence but says nothing about the target: it is
counted apart and left out of n, the failure rate and the worst outcome.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

from lab.cells import Cell
from lab.errors import LabError
from scenarios import evidence
from scenarios.evidence import BUSY_STATES   # which thread states are stuck: the harness's definition

VERDICT_SCHEMA = "zmqlab.verdict/1"

# Run-level outcomes about the target, as the scenario (or the lab's watchdog) reports them.
OUTCOMES = ("ok", "lost", "misordered", "deadlock", "unsupported", "error")
# ... and the lab's own: something outside the target ended or spoiled the run.
INFRA = "infra"
RUN_OUTCOMES = OUTCOMES + (INFRA,)
# 'skipped' exists only for verdicts: the backend could not run the target at all. A verdict
# is 'infra' only when every run was lost to the infrastructure.
VERDICT_OUTCOMES = RUN_OUTCOMES + ("skipped",)
# For "worst of": an error (the lab does not know what happened) trumps everything.
SEVERITY = {"skipped": 0, INFRA: 1, "ok": 2, "unsupported": 3, "misordered": 4, "lost": 5,
            "deadlock": 6, "error": 7}
# A failure is a run that tells us something is wrong; unsupported/skipped are absences.
FAILURES = ("misordered", "lost", "deadlock", "error")
# Which threads a stalled run reports as stuck: those in one of the harness's BUSY_STATES
# (inside, or waiting on, a zmq call: "send", "connect", "poll", "wait-mutex", ...). A thread in
# any other state ("running", "done", ...) is not reported, so a state the harness adds for a
# new zmq call must be added to BUSY_STATES (scenarios/evidence.py) too.

_VERSION_KEYS = ("pyzmq", "libzmq", "draft", "python")
# Report params that must equal the cell's fields (a mismatch is a lab bug, not a ZeroMQ one).
_PARAM_FIELDS = ("pattern", "transport", "threads", "msgs", "poll", "sync", "variant")


def worst_of(outcomes: Iterable[str]) -> str:
    outcomes = list(outcomes)
    if not outcomes:
        raise ValueError("worst_of() needs at least one outcome")
    return max(outcomes, key=SEVERITY.__getitem__)


def is_failure(outcome: str) -> bool:
    return outcome in FAILURES


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (n=0: we know nothing, (0, 1)).

    Chosen over the normal approximation because it behaves at k=0 and k=n, which is
    exactly where a lab that runs 5 or 10 times per cell lives.
    """
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"wilson() needs 0 <= k <= n, got k={k} n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


# A run report's optional blocks of the timeline work (docs/topology.md): when it happened
# (`timeline`), what the harness made of it (`explain`), who the senders were (`peers`) and how
# long the receiver drained (`drain`). Reports from before them lack them: None.
EVIDENCE_BLOCKS = ("timeline", "explain", "peers", "drain")


@dataclass(frozen=True)
class RunSummary:
    """One run: the headline fields, plus the whole report kept as evidence. The timeline
    blocks are named fields too (the HTML evidence reads them); they are parts of `report`, so
    a verdict's to_dict/from_dict carries them without storing anything twice."""
    outcome: str
    reason: str
    classified_by: str
    duration_s: float
    report: dict = field(hash=False, repr=False)
    timeline: dict | None = field(default=None, hash=False, repr=False, compare=False)
    explain: list | None = field(default=None, hash=False, repr=False, compare=False)
    peers: list | None = field(default=None, hash=False, repr=False, compare=False)
    drain: dict | None = field(default=None, hash=False, repr=False, compare=False)

    @classmethod
    def from_report(cls, report: dict) -> "RunSummary":
        """`report` must already satisfy run.schema.json (lab.schemas.validate('run', ...))."""
        return cls(outcome=report["outcome"], reason=report["reason"],
                   classified_by=report.get("classified_by", "harness"),
                   duration_s=float(report["duration_s"]), report=report,
                   **{name: report.get(name) for name in EVIDENCE_BLOCKS})

    @property
    def topology(self) -> str:
        return self.report.get("topology") or self.report["params"].get("topology") or "threads"

    @property
    def threads(self) -> list[dict]:
        return self.report["threads"]

    @property
    def stall(self) -> dict | None:
        return self.report["stall"]

    @property
    def error(self) -> str:
        return self.report.get("error") or self.reason

    @property
    def first_gap(self) -> tuple[int, int, int | None] | None:
        """(thread id, expected, got) of the first thread whose sequence broke."""
        for t in self.threads:
            if t["first_gap"] is not None:
                return (t["id"], t["first_gap"]["expected"], t["first_gap"]["got"])
        return None

    @property
    def stuck_threads(self) -> list[tuple[int, str]]:
        """(thread id, state) of every thread caught inside a zmq call."""
        return [(t["id"], t["state"]) for t in self.threads if t["state"] in BUSY_STATES]


@dataclass(frozen=True)
class Verdict:
    cell: Cell
    runs: tuple[RunSummary, ...] = ()
    skip_reason: str = ""          # non-empty only for skipped verdicts (then runs is empty)

    def __post_init__(self) -> None:
        if bool(self.runs) == bool(self.skip_reason):
            raise LabError(f"verdict for {self.cell.key} needs either runs or a skip reason, "
                           "not both or neither")

    # ---- derived facts -------------------------------------------------------------
    @property
    def n(self) -> int:
        """Runs that say something about the target (those lost to the infrastructure not)."""
        return len(self.runs) - self.infra

    @property
    def infra(self) -> int:
        """Runs lost to the infrastructure (kept in runs as evidence, counted apart)."""
        return self.counts[INFRA]

    @cached_property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(RUN_OUTCOMES, 0)
        for run in self.runs:
            counts[run.outcome] += 1
        return counts

    @property
    def failures(self) -> int:
        return sum(self.counts[o] for o in FAILURES)

    @cached_property
    def versions(self) -> dict | None:
        """What the runs say they ran on (first run that knows); None when skipped."""
        known = [r.report["versions"] for r in self.runs if r.report["versions"]["pyzmq"]]
        return {k: known[0][k] for k in _VERSION_KEYS} if known else None

    @cached_property
    def problems(self) -> tuple[str, ...]:
        """Lab-level inconsistencies; any makes the verdict an error whatever the runs say."""
        problems = []
        seen: dict[tuple, int] = {}
        for i, run in enumerate(self.runs, 1):
            v = run.report["versions"]
            if v["pyzmq"]:                 # reports the lab made up itself may not know them
                seen.setdefault(tuple(v[k] for k in _VERSION_KEYS), i)
            params = run.report["params"]
            # topology: only where the report states it (reports from before topologies, and
            # the lab's own reports of a dead run, may not)
            stated = _PARAM_FIELDS + (("topology",) if "topology" in params else ())
            for name in stated:
                if params[name] != getattr(self.cell, name):
                    problems.append(f"run {i} ran {name}={params[name]!r}, the cell has "
                                    f"{getattr(self.cell, name)!r}")
                    break
        if len(seen) > 1:
            described = "; ".join(f"run {i}: pyzmq {v[0]} libzmq {v[1]} draft={v[2]} python {v[3]}"
                                  for v, i in seen.items())
            problems.insert(0, f"runs disagree on versions ({described})")
        return tuple(problems)

    @property
    def worst(self) -> str:
        if self.skip_reason:
            return "skipped"
        if self.problems:
            return "error"
        if not self.n:
            return INFRA
        return worst_of(r.outcome for r in self.runs if r.outcome != INFRA)

    outcome = worst

    @property
    def failed(self) -> bool:
        return is_failure(self.worst)

    @property
    def rate(self) -> float:
        return self.failures / self.n if self.n else 0.0

    @cached_property
    def interval(self) -> tuple[float, float]:
        return wilson(self.failures, self.n)

    @property
    def rate_low(self) -> float:
        return self.interval[0]

    @property
    def rate_high(self) -> float:
        return self.interval[1]

    def first_run(self, *outcomes: str) -> RunSummary | None:
        return next((r for r in self.runs if r.outcome in outcomes), None)

    # ---- text ----------------------------------------------------------------------
    def summary_line(self) -> str:
        c = self.cell
        head = f"{c.row} {c.pattern}/{c.transport} {c.label}:"
        if self.skip_reason:
            return f"{head} skipped: {self.skip_reason}"
        if self.problems:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{head} error: {self.problems[0]}{more}"
        if not self.n:
            return (f"{head} infra {self.infra}/{self.infra} runs, nothing judged: "
                    f"{_one_line(self.first_run(INFRA).reason)}")
        return self._judged_line(head) + self._fault_note() + self._infra_note()

    @property
    def fault_judgements(self) -> dict[str, int]:
        """Runs per fault judgement (lab/fault_verdicts.judged): expected, unexpected, no-promise,
        not-applied; empty for a cell without a fault."""
        counts: dict[str, int] = {}
        for run in self.runs:
            if run.outcome == INFRA:        # lost to the infrastructure: not judged, fault included
                continue
            block = run.report.get("fault")
            if block:
                counts[block["judged"]] = counts.get(block["judged"], 0) + 1
        return counts

    def _fault_note(self) -> str:
        """What the fault did against what libzmq promises for it, with the promise's source."""
        blocks = [r.report["fault"] for r in self.runs if r.report.get("fault") and r.outcome != INFRA]
        if not blocks:
            return ""
        tally = ", ".join(f"{k} {v}/{len(blocks)}" for k, v in sorted(self.fault_judgements.items()))
        promise = blocks[0].get("expectation")
        source = (f" [{promise['scenario_id']}: {promise['expected']}"
                  f"{', by design' if promise['by_design'] else ''}; {promise['source_url']}]") if promise else ""
        odd = next((b for b in blocks if b["judged"] != "expected"), None)
        why = f"; {odd['judged']}: {odd['why']}" if odd else ""
        example = next((b["explain"] for b in blocks if b.get("explain")), None)
        return f"; fault: {tally}{source}{why}" + (f"; e.g. {example}" if example else "")

    def _infra_note(self) -> str:
        if not self.infra:
            return ""
        return (f"; infra {self.infra} not counted: "
                f"{_one_line(self.first_run(INFRA).reason)}")

    def _judged_line(self, head: str) -> str:
        n, counts = self.n, self.counts
        if counts["unsupported"] == n:
            first = self.first_run("unsupported")
            return f"{head} unsupported ({n}/{n} runs): {first.reason}"
        ci = f"95% CI {pct(self.rate_low)}–{pct(self.rate_high)}%"
        unsupported = ""
        if counts["unsupported"]:
            run = self.first_run("unsupported")
            unsupported = f"; unsupported {counts['unsupported']}/{n}: {run.reason}"
        if not self.failures:
            return f"{head} ok {counts['ok']}/{n} runs (0 failed, {ci}){unsupported}"
        kinds = [o for o in sorted(FAILURES, key=SEVERITY.__getitem__, reverse=True) if counts[o]]
        if len(kinds) == 1:
            text = f"{head} {kinds[0]} {self.failures}/{n} runs ({pct(self.rate)}%, {ci})"
        else:
            breakdown = ", ".join(f"{o} {counts[o]}" for o in kinds)
            text = f"{head} failed {self.failures}/{n} runs ({pct(self.rate)}%, {ci}) [{breakdown}]"
        return text + self._evidence(kinds[0]) + unsupported

    def _evidence(self, outcome: str) -> str:
        """The most telling detail of the first run with the worst failure."""
        run = self.first_run(outcome)
        if outcome == "error":
            return f"; error: {_one_line(run.error)}"
        if outcome == "deadlock":
            return "; " + describe_stall(run)
        gap_run = run if run.first_gap else self.first_run("lost", "misordered")
        gap = gap_run.first_gap if gap_run else None
        return f"; first gap: {describe_gap(gap)}" if gap else f"; {_one_line(run.reason)}"

    # ---- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": VERDICT_SCHEMA,
            "key": self.cell.key,
            "cell": self.cell.to_dict(),
            "outcome": self.worst,
            "skip_reason": self.skip_reason or None,
            "versions": self.versions,
            "n": self.n,
            "failures": self.failures,
            "counts": dict(self.counts),
            "rate": self.rate,
            "rate_low": self.rate_low,
            "rate_high": self.rate_high,
            "problems": list(self.problems),
            "summary": self.summary_line(),
            "runs": [r.report for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Verdict":
        """Rebuild from the runs; the stored derived fields must agree (else it was edited)."""
        cell = Cell.from_dict(data["cell"])
        if data.get("skip_reason"):
            verdict = skipped(cell, data["skip_reason"])
        else:
            verdict = judge_runs(cell, data["runs"])
        for name in ("key", "outcome", "n", "failures", "counts"):
            mine = cell.key if name == "key" else getattr(verdict, name)
            stored = data.get(name)
            if name == "counts" and isinstance(stored, dict):
                stored = {INFRA: 0, **stored}       # files from before 'infra' existed
            if stored != mine:
                raise LabError(f"verdict {data.get('key')!r} says {name}={data.get(name)!r} "
                               f"but its runs give {mine!r}")
        return verdict


def judge_runs(cell: Cell, reports: Sequence[dict]) -> Verdict:
    """Judge the runs of one cell. Reports must satisfy run.schema.json."""
    if not reports:
        raise LabError(f"no runs to judge for {cell.key}")
    return Verdict(cell=cell, runs=tuple(RunSummary.from_report(r) for r in reports))


def skipped(cell: Cell, reason: str) -> Verdict:
    """A cell the backend could not run at all (never a failure)."""
    return Verdict(cell=cell, skip_reason=_one_line(reason) or "skipped")


def describe_gap(gap: tuple[int, int, int | None]) -> str:
    """(thread, expected, got) in the harness's own words (scenarios/evidence.py)."""
    return evidence.describe_gap(*gap)


def describe_stall(run: RunSummary, limit: int = 4) -> str:
    stuck = run.stuck_threads
    where = ", ".join(f"thread {i} ({state})" for i, state in stuck[:limit])
    if len(stuck) > limit:
        where += f", +{len(stuck) - limit} more"
    # No sender inside zmq: the harness's own reason says what hung (e.g. the shutdown sender).
    text = f"stuck: {where}" if stuck else _one_line(run.reason)
    if run.stall:
        text += f" after {run.stall['since_progress_s']:g}s without progress"
        if run.stall["stacks"]:
            text += f", {len(run.stall['stacks'])} stacks captured"
    return text


def pct(x: float) -> str:
    """A rate as a whole percentage, without the sign: 0.173 -> '17'."""
    return str(round(x * 100))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
