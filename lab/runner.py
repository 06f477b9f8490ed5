"""Running cells through a backend: repeats, hard timeouts, and the lab's own classification
of runs the in-process watchdog could not report. Never retries a run to hide a failure:
every run a cell had is in its verdict."""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lab import matrix as matrix_mod
from lab import render, results, schemas
from lab.backends.base import Backend, ProcessResult
from lab.cells import Cell
from lab.errors import LabError
from lab.targets import Target
from lab.verdicts import Verdict, classify, skipped
from scenarios import flags

STDERR_TAIL = 20000  # characters of a dead run's stderr kept as evidence (faulthandler stacks)


@dataclass(frozen=True)
class RunSettings:
    repeat: int = 5
    stall: float = 2.0
    sleep: float = 0.0
    timeout: float | None = None          # hard per-run bound; None: derived from the cell
    extra: tuple[str, ...] = field(default=())   # more scenario flags (e.g. --inject for tests)

    # (class constants, not fields)
    MAX_SECONDS = 7 * 24 * 3600          # --stall, --sleep, --timeout: beyond this is a typo
    START_MARGIN_S = 1.0                 # a run's interpreter start and imports, in a --timeout's floor
    MAX_HARD_TIMEOUT_S = 1e8             # ~3 years: still representable by every clock and timer

    def __post_init__(self):
        if self.repeat < 1:
            raise LabError("--repeat must be at least 1")
        for name in ("stall", "sleep"):
            if not math.isfinite(getattr(self, name)):
                raise LabError("--%s must be a finite number" % name)
        if self.stall <= 0:
            raise LabError("--stall must be above 0 seconds")
        if self.sleep < 0:
            raise LabError("--sleep must not be negative")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise LabError("--timeout must be a positive number of seconds")
        for name in ("stall", "sleep", "timeout"):
            value = getattr(self, name)
            if value is not None and value > self.MAX_SECONDS:
                raise LabError("--%s must be at most %d seconds (a week)" % (name, self.MAX_SECONDS))
        # A run is only classified by its own watchdog after --sleep and a --stall window
        # without progress (plus its start): a hard timeout below that turns every slow start
        # into a false "deadlock" classified by the lab.
        floor = self.stall + self.sleep + self.START_MARGIN_S
        if self.timeout is not None and self.timeout < floor:
            raise LabError("--timeout %g s is below what a run needs: --stall + --sleep + %g s start = %g s"
                           % (self.timeout, self.START_MARGIN_S, floor))

    def hard_timeout(self, cell: Cell) -> float:
        """Above the stall window by a margin that grows with the work, so a slow but moving
        run is never killed; the in-process watchdog normally ends a stuck run long before."""
        if self.timeout:
            return self.timeout
        # --poll waits 1 ms per poll, up to two per ping, in every thread at once: 5 ms a ping
        # leaves room for a loaded machine.
        polls = cell.msgs * 0.005 if cell.poll else 0.0
        bound = self.stall + self.sleep + 20.0 + cell.threads * cell.msgs / 2000.0 + polls
        if not bound <= self.MAX_HARD_TIMEOUT_S:
            raise LabError("%s is too large to bound: its hard timeout would be %.3g s; lower --threads "
                           "or --msgs" % (cell.key, bound))
        return bound


def scenario_flags(cell: Cell, settings: RunSettings):
    """The cell's argv as the harness will parse it; a bad flag is a LabError before any run."""
    argv = cell.scenario_argv(settings.stall, settings.sleep, ["--quiet", *settings.extra])
    try:
        return argv, flags.parse(argv)
    except flags.FlagError as exc:
        raise LabError("%s: %s" % (cell.key, exc)) from None


def lab_report(cell: Cell, target: Target, settings: RunSettings, outcome: str, reason: str,
               result: ProcessResult) -> dict:
    """A run report made by the lab when the scenario process could not make its own."""
    tail = (result.stderr or "")[-STDERR_TAIL:]
    reason += " [target %s pins pyzmq %s, libzmq %s]" % (target.name, target.pyzmq, target.libzmq)
    return {
        "schema": "zmqlab.run/1",
        # The process never said which versions it ran; empty strings keep this report out
        # of the verdict's version-consistency check (the pin is named in the reason).
        "versions": {"pyzmq": "", "libzmq": "", "draft": target.draft, "python": ""},
        "params": flags.params(scenario_flags(cell, settings)[1]),
        "outcome": outcome, "reason": reason, "classified_by": "lab",
        "threads": [],
        "totals": {k: 0 for k in ("expected", "attempted", "completed", "received", "missing",
                                  "duplicates", "reorders")},
        "shutdown_received": False,
        "duration_s": round(result.wall_s, 4), "msgs_per_s": 0.0,
        # The lab cannot know when progress stopped: since the run started is the bound it has.
        "stall": {"since_progress_s": round(result.wall_s, 3), "stacks": {"stderr": tail}}
        if result.timed_out else None,
        "error": None if result.timed_out else reason + (": " + tail.strip().splitlines()[-1] if tail.strip() else ""),
    }


def report_of(result: ProcessResult, cell: Cell, target: Target, settings: RunSettings, timeout: float) -> dict:
    """The run's own JSON report when it made one (even if it came as the lab was killing it);
    otherwise the lab's classification: deadlock on a hard timeout, error on a crash."""
    lines = [ln for ln in (result.stdout or "").splitlines() if ln.startswith("{")]
    problem = None
    if lines:
        try:
            report = json.loads(lines[-1])
            schemas.validate("run", report, source="the %s run report" % cell.key)
            return report
        except (ValueError, LabError) as exc:
            problem = "unreadable run report: %s" % exc
    if result.timed_out:
        return lab_report(cell, target, settings, "deadlock",
                          "no report within the hard timeout of %.0f s: the lab killed the run "
                          "(its in-process watchdog could not report)" % timeout, result)
    return lab_report(cell, target, settings, "error", problem or
                      "the scenario exited with status %s and no report" % result.returncode, result)


def run_cell(backend: Backend, target: Target, cell: Cell, settings: RunSettings,
             on_run: Callable[[int, dict], None] | None = None) -> Verdict:
    """Run one cell `settings.repeat` times and judge it."""
    timeout = settings.hard_timeout(cell)
    argv, _ = scenario_flags(cell, settings)
    reports = []
    for i in range(settings.repeat):
        report = report_of(backend.run(target, argv, timeout), cell, target, settings, timeout)
        reports.append(report)
        if on_run:
            on_run(i + 1, report)
        if report["outcome"] == "unsupported":
            break                  # the build lacks it: repeating cannot change that
    return classify(cell, reports)


class Progress:
    """One line per finished cell (a bar on a terminal), so long sweeps show where they are."""

    def __init__(self, total_runs: int, stream=sys.stderr):
        self.total, self.done, self.stream = total_runs, 0, stream
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def run_finished(self, label: str, n: int, outcome: str):
        self.done += 1
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            eta = (time.monotonic() - self.started) / self.done * (self.total - self.done)
            self.stream.write("\r[%s%s] %d/%d runs, ~%ds left  %-50.50s" % (
                "#" * filled, "." * (width - filled), self.done, self.total, eta, "%s #%d %s" % (label, n, outcome)))
            self.stream.flush()

    def cell_finished(self, verdict: Verdict):
        line = render.verdict_line(verdict)
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()

    def note(self, text: str):
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


# matrix.json holds every verdict whole (runs, stacks): tens of MB for a full sweep, so
# rewriting it after every cell is throttled to this; cells/*.json are written at once.
MATRIX_REWRITE_S = 10.0


def run_matrix(backend: Backend, targets: Sequence[Target], cells: Sequence[Cell], settings: RunSettings,
               run_dir: Path, params: dict, progress: Progress | None = None,
               done: Sequence[Verdict] = ()) -> matrix_mod.Matrix:
    """Run every cell not already `done` (a resumed run), saving each verdict as soon as it is
    judged, and matrix.json (marked `complete: false` until the last cell) from the start on
    and again as cells finish, so no interruption leaves a run without one."""
    if not cells:
        raise LabError("no cells to run")
    for cell in cells[:1]:
        scenario_flags(cell, settings)        # bad flags fail before anything is created
    finished = {v.cell.key for v in done}
    todo = [c for c in cells if c.key not in finished]
    progress = progress or Progress(len(todo) * settings.repeat)
    by_name = {t.name: t for t in targets}
    verdicts = list(done)
    # What `matrix --resume` needs to finish this run exactly as it was asked for.
    params = dict(params, plan=[c.to_dict() for c in cells], timeout=settings.timeout, extra=list(settings.extra))
    created = results.now_iso()
    last_write = 0.0

    def save(final: bool = False):
        nonlocal last_write
        complete = len(verdicts) == len(cells)
        built = matrix_mod.build(run_dir.name, backend.name, verdicts, params=dict(params, complete=complete),
                                 targets=targets, created=results.now_iso() if final else created)
        results.save_matrix(run_dir, built)
        if final:
            results.write_text_atomic(run_dir / "matrix.md", render.markdown(built))
        last_write = time.monotonic()
        return built

    save()
    try:
        for target in targets:
            mine = [c for c in todo if c.target == target.name]
            if not mine:
                continue
            reason = backend.prepare(target)
            if reason:
                progress.note("skipping %s: %s" % (target.name, reason))
                progress.done += len(mine) * settings.repeat
            for cell in mine:
                if reason:
                    verdict = skipped(cell, reason)
                else:
                    label = "%s %s" % (target.name, "/".join(cell.column))
                    verdict = run_cell(backend, by_name[cell.target], cell, settings,
                                       on_run=lambda n, r, label=label: progress.run_finished(label, n, r["outcome"]))
                    progress.done += settings.repeat - verdict.n   # unsupported stops early
                    progress.cell_finished(verdict)
                results.save_verdict(run_dir, verdict)
                verdicts.append(verdict)
                if time.monotonic() - last_write >= MATRIX_REWRITE_S:
                    save()
            backend.release(target)
    finally:
        backend.close()
        built = save(final=True)
    return built
