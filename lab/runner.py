"""Running cells through a backend: repeats, hard timeouts, and the lab's own classification
of runs the in-process watchdog could not report. Never retries a run to hide a failure:
every run a cell had is in its verdict. Only a run lost to the infrastructure (outcome
'infra': its container killed, paused or removed from outside, an engine error) is run once
more, in a fresh container; it stays in the verdict as evidence, counted apart.

Topologies: a `threads` or `processes` cell is one `backend.run` (the scenario program starts
its own second process). A `containers` cell is one `backend.run_peers` per run: a receiver and
a sender container, maybe of two pins; the receiver's report is the run's, with the sender's own
account attached when it never reached the receiver (scenarios/merge.py). A backend that cannot
run two peers says so by raising LabError from run_peers before anything ran (the local backend
always does): the cell is then skipped with that one line, as an unbuildable target is, never
an error of the target."""
from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import nullcontext

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import rich.progress
from rich.console import Console

from lab import matrix as matrix_mod
from lab import fault_verdicts, render, results, schemas, slots
from lab.backends.base import Backend, ProcessResult
from lab.cells import Cell
from lab.errors import LabError
from lab.faults import FaultUnsupported
from lab.requests import RunSettings
from lab.targets import Target
from lab.verdicts import INFRA, Verdict, judge_runs, skipped
from scenarios import flags
from scenarios import merge     # the sender's own output, attached when its account never arrived

if TYPE_CHECKING:
    from lab.backends.base import PeerResult

STDERR_TAIL = 20000  # characters of a dead run's stderr kept as evidence (faulthandler stacks)


def lab_report(cell: Cell, target: Target, settings: RunSettings, outcome: str, reason: str,
               result: ProcessResult) -> dict:
    """A run report made by the lab when the scenario process could not make its own."""
    tail = (result.stderr or "")[-STDERR_TAIL:]
    infra = outcome == INFRA
    if not infra:       # an outside event says nothing about the target's versions
        reason += " [target %s pins pyzmq %s, libzmq %s%s]" % (target.name, target.pyzmq, target.libzmq,
                                                              "; sender %s" % cell.sender if cell.sender else "")
    stalled = result.timed_out and not infra
    report = {
        "schema": "zmqlab.run/1",
        # The process never said which versions it ran; empty strings keep this report out
        # of the verdict's version-consistency check (the pin is named in the reason).
        "versions": {"pyzmq": "", "libzmq": "", "draft": target.draft, "python": ""},
        "params": flags.params(settings.check(cell)),
        "outcome": outcome, "reason": reason, "classified_by": "lab",
        "threads": [],
        "totals": {k: 0 for k in ("expected", "attempted", "completed", "received", "missing",
                                  "duplicates", "reorders")},
        "shutdown_received": False,
        "duration_s": round(max(0.0, result.wall_s - result.paused_s), 4), "msgs_per_s": 0.0,
        # The lab cannot know when progress stopped: since the run started is the bound it has.
        "stall": {"since_progress_s": round(result.wall_s, 3), "stacks": {"stderr": tail}}
        if stalled else None,
        "error": None if (result.timed_out or infra)
        else reason + (": " + tail.strip().splitlines()[-1] if tail.strip() else ""),
    }
    if result.paused_s > 0:
        report["paused_s"] = round(result.paused_s, 3)
    return report


def _paused_within(report: dict, result: ProcessResult) -> float:
    """How much of the run's own measured time (its last duration_s before it ended) the
    container spent paused; all of result.paused_s when the backend did not say when."""
    if not result.pauses:
        return result.paused_s
    start = result.wall_s - float(report["duration_s"])
    return sum(max(0.0, min(b, result.wall_s) - max(a, start)) for a, b in result.pauses)


def _without_pause(report: dict, result: ProcessResult) -> dict:
    """The report with the time its container was paused taken out of duration and rate."""
    if result.paused_s <= 0:
        return report
    report = dict(report)
    duration = max(0.0, float(report["duration_s"]) - _paused_within(report, result))
    report["duration_s"] = round(duration, 4)
    received = (report.get("totals") or {}).get("received", 0)
    report["msgs_per_s"] = round(received / duration, 1) if duration > 0 else 0.0
    report["paused_s"] = round(result.paused_s, 3)
    return report


def _infra_report(own: dict | None, cell: Cell, target: Target, settings: RunSettings, what: str,
                  result: ProcessResult) -> dict:
    """Outcome 'infra', naming the outside event; the run's own report, if it made one, stays
    as evidence (its outcome named in the reason)."""
    if own is None:
        return lab_report(cell, target, settings, INFRA, what, result)
    said = " ".join(("%s: %s" % (own["outcome"], own["reason"])).split())
    report = dict(_without_pause(own, result), outcome=INFRA, classified_by="lab",
                  reason="%s (the run's own report said %s)" % (what, said))
    return report


def report_of(result: ProcessResult, cell: Cell, target: Target, settings: RunSettings, timeout: float) -> dict:
    """The run's own JSON report when it made one (even if it came as the lab was killing it);
    otherwise the lab's classification: deadlock on a hard timeout, error on a crash.
    Infrastructure first: a run its backend saw ended or spoiled from outside (result.infra),
    or whose container someone paused while it failed, is 'infra', never charged to the target;
    an ok or unsupported run that was paused keeps its outcome, the pause taken out of its
    duration and named in its reason."""
    lines = [ln for ln in (result.stdout or "").splitlines() if ln.startswith("{")]
    problem = None
    report = None
    if lines:
        try:
            report = json.loads(lines[-1])
            schemas.validate("run", report, source="the %s run report" % cell.key)
        except (ValueError, LabError) as exc:
            report, problem = None, "unreadable run report: %s" % exc
    if result.infra:
        return _infra_report(report, cell, target, settings, result.infra, result)
    if result.container and result.returncode == 0 and not (result.stdout or "").strip():
        # The harness prints its report before every exit 0: none at all is the engine losing
        # a short exec's output (seen 1 in ~3000 runs; docker/docker-py#2042), not the target.
        return _infra_report(None, cell, target, settings, "the engine delivered none of the run's output "
                             "(exit 0) from container %s: a known exec race (docker/docker-py#2042)"
                             % result.container, result)
    if result.paused_s > 0:
        paused = "container %s was paused by someone else for %.1f s during the run" % (
            result.container or "?", result.paused_s)
        if report is not None and report["outcome"] in ("ok", "unsupported"):
            report = _without_pause(report, result)
            report["reason"] += " (%s: left out of its duration)" % paused
            return report
        return _infra_report(report, cell, target, settings, paused + ", so its outcome cannot be trusted",
                             result)
    if report is not None:
        return report
    if result.timed_out:
        return lab_report(cell, target, settings, "deadlock",
                          "no report within the hard timeout of %.0f s: the lab killed the run "
                          "(its in-process watchdog could not report)" % timeout, result)
    return lab_report(cell, target, settings, "error", problem or
                      "the scenario exited with status %s and no report" % result.returncode, result)


def peers_result(peers: PeerResult) -> ProcessResult:
    """The receiver's result, charged with the sender's outside event: a sender container
    killed or removed from outside leaves the receiver waiting, which is no finding."""
    rx, tx = peers.receiver, peers.sender
    if tx.infra and not rx.infra:
        return dataclasses.replace(rx, infra="the sender's " + tx.infra)
    return rx


def peers_report(peers: PeerResult, cell: Cell, target: Target, settings: RunSettings, timeout: float) -> dict:
    """A containers run's report: the receiver's, with the sender's own output attached, and
    the faults applied meanwhile with their verdict (lab/fault_verdicts.judged)."""
    report = report_of(peers_result(peers), cell, target, settings, timeout)
    report = merge.attach(report, peers.sender.stdout, peers.sender.stderr)
    if peers.faults:
        report["faults"] = list(peers.faults)
        report["fault"] = fault_verdicts.judged(report)
        _fault_timeline(report)
    return report


def _fault_timeline(report: dict) -> None:
    """Each fault's start and end as timeline events beside the pings and the monitor's."""
    timeline = report.get("timeline")
    if not timeline or not timeline.get("t0_ns"):
        return
    ms = lambda ns: round((ns - timeline["t0_ns"]) / 1e6, 3)  # noqa: E731
    for f in report["faults"]:
        if f.get("start_ns") is None:
            continue
        for edge, ns in (("FAULT_START", f["start_ns"]), ("FAULT_END", f.get("end_ns"))):
            if ns is not None:
                timeline["events"].append({"t_ms": ms(ns), "event": edge, "side": f["target"],
                                           "fault": f.get("label") or f["kind"]})
    timeline["events"].sort(key=lambda e: e["t_ms"] if e.get("t_ms") is not None else float("inf"))


class CannotPair(Exception):
    """The backend cannot run two peers (its one-line reason): the cell is skipped."""


def _one_run(backend: Backend, target: Target, sender: Target, cell: Cell, argv: list[str], settings: RunSettings,
             timeout: float, on_state: slots.OnState | None = None) -> dict:
    if cell.topology != "containers":
        return report_of(backend.run(target, argv, timeout, on_state=on_state), cell, target, settings, timeout)
    run_peers = getattr(backend, "run_peers", None)
    if run_peers is None:
        raise CannotPair("the %s backend cannot run a receiver and a sender container" % backend.name)
    try:
        peers = run_peers(target, sender, argv, timeout, on_state=on_state,
                          faults=(cell.fault,) if cell.fault else ())
    except FaultUnsupported as exc:
        return lab_report(cell, target, settings, "unsupported", "fault %s: %s" % (cell.fault.label, exc.reason),
                          ProcessResult("", "", None, False, 0.0))
    except LabError as exc:
        raise CannotPair(str(exc)) from None
    return peers_report(peers, cell, target, settings, timeout)


def run_cell(backend: Backend, target: Target, cell: Cell, settings: RunSettings,
             on_run: Callable[[int, dict], None] | None = None, sender: Target | None = None,
             pace: slots.Slots | None = None) -> Verdict:
    """Run one cell `settings.repeat` times and judge it. A run lost to the infrastructure is
    run once more (the backend gave it a fresh container); both reports are kept. `sender`:
    the senders' pin of a containers cell of two pins (default: `target`). `pace`: the slots
    that several cells at once share (each run takes one; lab/slots.py)."""
    timeout = settings.hard_timeout(cell)
    argv = settings.argv(cell)
    reports = []
    for i in range(settings.repeat):
        for attempt in (1, 2):
            try:
                with pace.run() if pace else nullcontext() as on_state:
                    report = _one_run(backend, target, sender or target, cell, argv, settings, timeout, on_state)
            except CannotPair as exc:
                if reports:         # it ran before: the backend broke mid-cell, which is no skip
                    raise LabError("%s: %s" % (cell.key, exc)) from None
                return skipped(cell, str(exc))
            if report["outcome"] == INFRA and attempt == 1:
                report["reason"] += "; the run was made again in a fresh container"
            reports.append(report)
            if on_run:
                on_run(i + 1, report)
            if report["outcome"] != INFRA:
                break
        if report["outcome"] == "unsupported":
            break                  # the build lacks it: repeating cannot change that
    return judge_runs(cell, reports)


class Progress:
    """Where a long sweep is: on a terminal, a live rich bar (runs done, ETA, the run that just
    ended) with each judged cell printed above it; elsewhere (CI logs, pipes) one plain line
    per cell, as before."""

    def __init__(self, total_runs: int, stream=sys.stderr):
        self.console = Console(file=stream, highlight=False)
        self.tty = self.console.is_terminal
        self.total, self._done = total_runs, 0
        self._lock = threading.Lock()        # runs end in worker threads when cells run at once
        self.bar = None
        if self.tty:
            self.bar = rich.progress.Progress(
                rich.progress.BarColumn(), rich.progress.MofNCompleteColumn(), rich.progress.TextColumn("runs"),
                rich.progress.TimeRemainingColumn(), rich.progress.TextColumn("{task.fields[now]}"),
                console=self.console, transient=True)
            self.task = self.bar.add_task("runs", total=total_runs, now="")
            self.bar.start()

    @property
    def done(self) -> int:
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        self._done = value
        if self.bar is not None:
            self.bar.update(self.task, completed=value)

    def run_finished(self, label: str, n: int, outcome: str):
        with self._lock:
            self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, now="%s #%d %s" % (label, n, outcome))

    def add(self, runs: int) -> None:
        with self._lock:
            self.done += runs

    def cell_finished(self, verdict: Verdict):
        self.note(render.verdict_line(verdict))

    def note(self, text: str):
        if self.bar is not None:
            self.console.print(text, soft_wrap=True)
        else:
            self.console.file.write(text + "\n")
            self.console.file.flush()

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# matrix.json holds every verdict whole (runs, stacks): tens of MB for a full sweep, so
# rewriting it after every cell is throttled to this; cells/*.json are written at once.
MATRIX_REWRITE_S = 10.0
MATRIX_REWRITE_SHARE = 0.05


class RunFiles:
    """A run directory as the sweep fills it: cells/*.json at once, matrix.json from the start
    (complete: false until the last cell, with the plan `matrix --resume` needs) and again
    as cells finish, matrix.md at the end. A write the disk refuses ends the run in one line."""

    def __init__(self, run_dir: Path, backend_name: str, targets, cells, settings: RunSettings, params: dict,
                 done: Sequence[Verdict]):
        self.run_dir, self.backend_name, self.targets, self.cells = run_dir, backend_name, targets, cells
        self.verdicts = list(done)
        self.params = dict(params, plan=[c.to_dict() for c in cells], timeout=settings.timeout,
                           extra=list(settings.extra))
        self.created = results.now_iso()
        self.last_write = 0.0
        self.rewrite_every = MATRIX_REWRITE_S

    def begin(self) -> None:
        self._keep(self.save)

    def add(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self._keep(lambda: results.save_verdict(self.run_dir, verdict), verdict)
        if time.monotonic() - self.last_write >= self.rewrite_every:
            self._keep(self.save)

    def save(self, final: bool = False) -> matrix_mod.Matrix:
        started = time.monotonic()
        built = matrix_mod.build(self.run_dir.name, self.backend_name, self.verdicts,
                                 params=dict(self.params, complete=len(self.verdicts) == len(self.cells)),
                                 targets=self.targets, created=results.now_iso() if final else self.created)
        results.save_matrix(self.run_dir, built, check=final, verdicts_checked=True)
        if final:
            results.write_text_atomic(self.run_dir / "matrix.md", render.markdown(built))
        self.last_write = time.monotonic()
        # matrix.json holds every run report: a full sweep's grows past 150 MB and takes ~15 s
        # of this process's CPU to write, which a fixed interval spent again every few seconds
        # (measured: the sweep's lab process busy rewriting it for half its length). The
        # rewrites get rarer as they get dearer, at most MATRIX_REWRITE_SHARE of the time;
        # cells/*.json are written as each cell ends whatever the interval.
        self.rewrite_every = max(MATRIX_REWRITE_S, (self.last_write - started) / MATRIX_REWRITE_SHARE)
        return built

    def _keep(self, write, verdict: Verdict | None = None) -> None:
        """The verdict that could not be saved is printed whole on stderr first: not lost."""
        try:
            write()
        except OSError as exc:
            if verdict is not None:
                sys.stderr.write(json.dumps(verdict.to_dict()) + "\n")
            raise LabError("cannot write to %s: %s%s" % (self.run_dir, exc.strerror or exc, "; the verdict of %s "
                           "is printed above" % verdict.cell.key if verdict is not None else "")) from None


def run_matrix(backend: Backend, targets: Sequence[Target], cells: Sequence[Cell], settings: RunSettings,
               run_dir: Path, params: dict, progress: Progress | None = None,
               done: Sequence[Verdict] = (), jobs: int = 1) -> matrix_mod.Matrix:
    """Run every cell not already `done` (a resumed run) into `run_dir` (RunFiles: no
    interruption leaves a run without its matrix.json). `targets`: every pin the cells need,
    as receiver or sender. One cell at a time, receiver by receiver in pin order, each target's
    containers released as soon as no later cell needs them; with `jobs` > 1, that many cells at
    once and every container kept up until the end (a grid of pairs needs them all throughout)."""
    if not cells:
        raise LabError("no cells to run")
    finished = {v.cell.key for v in done}
    place = {t.name: i for i, t in enumerate(targets)}
    todo = sorted((c for c in cells if c.key not in finished), key=lambda c: place[c.target])
    rows = [t for t in targets if any(c.target == t.name for c in cells)] or list(targets)
    progress = progress or Progress(len(todo) * settings.repeat)
    files = RunFiles(run_dir, backend.name, rows, cells, settings, params, done)
    files.begin()
    ready = Readiness(backend, targets, progress)
    try:
        if jobs > 1:
            for verdict in _at_once(backend, ready, todo, settings, progress, jobs):
                files.add(verdict)
        else:
            last = {name: i for i, c in enumerate(todo) for name in (c.target, c.sender_target)}
            for i, cell in enumerate(todo):
                files.add(judge_cell(backend, ready, cell, settings, progress))
                for target in targets:
                    if last.get(target.name) == i:
                        backend.release(target)
    finally:
        progress.close()
        backend.close()
        try:
            built = files.save(final=True)
        except OSError as exc:             # the cells/*.json saved so far stand; resume finishes it
            raise LabError("cannot write matrix.json to %s: %s" % (run_dir, exc.strerror or exc)) from None
    return built


class Readiness:
    """Each target prepared once (backend.prepare); a cell is skipped, with the reason, when its
    receiver's or its sender's pin cannot run on this backend (said once per target)."""

    def __init__(self, backend: Backend, targets: Sequence[Target], progress: Progress):
        self.backend, self.progress = backend, progress
        self.by_name = {t.name: t for t in targets}
        self.reasons: dict[str, str | None] = {}

    def _prepare(self, name: str) -> str | None:
        if name not in self.reasons:
            self.reasons[name] = self.backend.prepare(self.by_name[name])
            if self.reasons[name]:
                self.progress.note("skipping %s: %s" % (name, self.reasons[name]))
        return self.reasons[name]

    def reason(self, cell: Cell) -> str | None:
        own = self._prepare(cell.target)
        if own or not cell.sender:
            return own
        theirs = self._prepare(cell.sender)
        return "sender %s: %s" % (cell.sender, theirs) if theirs else None


def judge_cell(backend: Backend, ready: Readiness, cell: Cell, settings: RunSettings,
               progress: Progress, pace: slots.Slots | None = None) -> Verdict:
    """One cell's verdict (a skipped one when its pins cannot run here), counted on `progress`."""
    reason = ready.reason(cell)
    if reason:
        progress.add(settings.repeat)
        return skipped(cell, reason)
    label = "%s %s" % (cell.row, "/".join(cell.column))
    verdict = run_cell(backend, ready.by_name[cell.target], cell, settings,
                       on_run=lambda n, r: progress.run_finished(label, n, r["outcome"]),
                       sender=ready.by_name[cell.sender_target], pace=pace)
    progress.add(settings.repeat - len(verdict.runs))      # unsupported stops early, skips run nothing
    progress.cell_finished(verdict)
    return verdict


def _at_once(backend: Backend, ready: Readiness, todo: Sequence[Cell], settings: RunSettings,
             progress: Progress, jobs: int):
    """Cells at once, `jobs` runs busy at a time (lab/slots.py: a run waiting out its stall
    window frees its slot; the backend's run and run_peers are thread-safe), verdicts in the
    order they end. Every pin is prepared first, here: prepare() is not meant to race."""
    for cell in todo:
        ready.reason(cell)
    pace = slots.Slots(jobs)
    pool = ThreadPoolExecutor(max_workers=jobs * slots.SPARE_WORKERS, thread_name_prefix="zmqlab-cell")
    try:
        pending = {pool.submit(judge_cell, backend, ready, cell, settings, progress, pace) for cell in todo}
        while pending:
            ended, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ended:
                yield future.result()
    finally:
        # Ctrl-C or an error: nothing new starts; the runs under way end when close() removes
        # their containers (run_matrix's finally), each within its hard timeout at worst.
        pool.shutdown(wait=False, cancel_futures=True)


def extend_run(run_dir: Path, verdicts: Sequence[Verdict], backend_name: str) -> matrix_mod.Matrix:
    """A finished run directory with the verdicts of more cells added (its plan grows by them):
    upgrade-check puts its rolling upgrade's pairs next to the cells they are judged against,
    so `compare BASE NEW` of the same directories later says the same."""
    old = results.load_matrix(run_dir)
    keys = {v.cell.key for v in verdicts}
    for verdict in verdicts:
        results.save_verdict(run_dir, verdict)
    plan = [c for c in old.params.get("plan") or () if Cell.from_dict(c).key not in keys]
    plan += [v.cell.to_dict() for v in verdicts]
    every = [v for v in old.verdicts if v.cell.key not in keys] + list(verdicts)
    backends = list(dict.fromkeys(old.backend.split("+") + [backend_name]))
    built = matrix_mod.build(old.run_id, "+".join(backends), every,
                             params=dict(old.params, plan=plan, complete=len(every) == len(plan)),
                             targets=old.targets, created=results.now_iso())
    results.save_matrix(run_dir, built)
    results.write_text_atomic(run_dir / "matrix.md", render.markdown(built))
    return built
