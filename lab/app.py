"""The use cases behind the Invoke tasks: each takes one request (lab/requests.py, validated
once) or a few plain values, does its work through the core and the backends, and returns an
Outcome: the text for stdout and the exit code. tasks.py only parses, calls one function here
and prints. Progress goes to stderr as it happens (lab.session.say)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import compare as cmp
from lab import engine, interop, render, results
from lab import reproduce as rep
from lab import sweep
from lab.cells import Cell
from lab.errors import Interrupted, LabError
from lab.requests import (INTEROP_DEFAULTS, MATRIX_DEFAULTS, MAX_REPEAT, SWEEP_DEFAULTS, InteropRequest,
                          PairRequest, ReproduceRequest, RunSettings, ScenarioRequest, SweepRequest, check_backend)
from lab.results import check_output_dir, check_output_file
from lab.runner import Progress, Readiness, extend_run, judge_cell, run_cell, run_matrix
from lab.session import choose_backend, ensure_images, open_run, say
from lab.targets import load_targets, select
from lab.verdicts import judge_runs

use_engine = engine.use     # --engine URL: the engine this process and its children talk to

__all__ = ["Interrupted", "LabError", "INTEROP_DEFAULTS", "MATRIX_DEFAULTS", "MAX_REPEAT", "SWEEP_DEFAULTS",
           "Outcome", "InteropRequest", "PairRequest", "ReproduceRequest", "ScenarioRequest", "SweepRequest"]


@dataclass(frozen=True)
class Outcome:
    """What a task prints on stdout, and its exit status (0 fine, 1 checked thing failed)."""
    text: str = ""
    code: int = 0


# ---- running cells ------------------------------------------------------------------------------

def scenario(request: ScenarioRequest) -> Outcome:
    """The cell (in each topology asked for, one after the other). A containers cell on a
    backend that cannot run two peers is a skipped verdict, with the backend's reason."""
    settings, target = request.settings, request.target
    pins = (target,) + ((request.sender,) if request.sender else ())
    backend = choose_backend(request.backend, results.new_run_id(), pins)
    verdicts = []
    try:
        for pin in pins:
            reason = backend.prepare(pin)
            if reason:
                raise LabError("%s cannot run on the %s backend: %s" % (pin.name, backend.name, reason))
        for cell in request.cells:
            say("Running %s %d times (stall %.1f s, hard timeout %.0f s per run)" % (
                cell.key, settings.repeat, settings.stall, settings.hard_timeout(cell)))
            verdicts.append(run_cell(backend, target, cell, settings, sender=request.sender, on_run=lambda n, r: say(
                "  run %d/%d: %s — %s" % (n, settings.repeat, r["outcome"], r["reason"]))))
    finally:
        backend.close()
    if request.json_path:
        results.write_json_atomic(request.json_path, verdicts[0].to_dict(), "verdict")
        say("verdict written to %s" % request.json_path)
    # 1 also when nothing could be judged (every run lost to the infrastructure, a skipped
    # topology): no check was made
    return Outcome("\n".join(map(render.verdict_line, verdicts)),
                   1 if any(v.failed or v.n == 0 for v in verdicts) else 0)


def matrix(request: SweepRequest) -> Outcome:
    return _table(sweep.sweep_run(request))


def sweep_run(request: SweepRequest) -> Outcome:
    return Outcome(str(sweep.sweep_run(request)))


def resume(run_dir: str, backend: str) -> Outcome:
    """Finish an interrupted `matrix` run in its own directory: only the cells without a
    verdict file run, with the run's original parameters; then matrix.json is complete."""
    check_backend(backend)
    folder = Path(run_dir)
    if not (folder / results.MATRIX_FILE).is_file():
        raise LabError("%s has no matrix.json: it is not a matrix run (or was killed before it began)" % folder)
    old = results.load_matrix(folder)
    p = old.params
    if "plan" not in p:
        raise LabError("%s was made by a lab without resume (no cell plan in its matrix.json)" % folder)
    cells = tuple(Cell.from_dict(c) for c in p["plan"])
    settings = RunSettings(repeat=p["repeat"], stall=p["stall"], sleep=p["sleep"], timeout=p.get("timeout"),
                           extra=tuple(p.get("extra") or ()))
    targets = select(load_targets(), list(dict.fromkeys(n for c in cells for n in (c.target, c.sender_target))))
    request = _Resumed(targets, cells, p, settings)
    done = [v for v in results.load_verdicts(folder) if v.cell.key in {c.key for c in cells}]
    chosen = old.backend.split("+")[0] if backend == "auto" else backend
    runner = choose_backend(chosen, folder.name, targets)
    say("Resuming %s: %d of %d cells left (x %d repeats)" % (folder, len(cells) - len(done), len(cells),
                                                             settings.repeat))
    if "interop" in p:           # an interop grid: its own pace (jobs) and its own reports
        run_matrix(runner, targets, cells, settings, folder, request.params,
                   Progress((len(cells) - len(done)) * settings.repeat), done=done, jobs=p.get("jobs", 1))
        return _grid(folder)
    return _table(sweep.run_into(request, folder, runner, done))


@dataclass(frozen=True)
class _Resumed:
    """A matrix request rebuilt from a run's own matrix.json (its plan and parameters)."""
    targets: tuple
    cells: tuple
    recorded: dict
    settings: RunSettings

    @property
    def params(self) -> dict:
        return {k: v for k, v in self.recorded.items() if k not in ("plan", "timeout", "extra", "complete")}

    @property
    def jobs(self) -> int:
        return self.recorded.get("jobs", 1)


# The patterns of the full matrix the 26 min 52 s reference timed (issue 9): later patterns
# (reqrep) would make the same figure time more cells.
REFERENCE_PATTERNS = ("pair", "pubsub", "pushpull", "clientserver", "routerdealer", "scattergather",
                      "radiodish", "peer", "channel")


def _table(run_dir: Path) -> Outcome:
    say("Wrote %s and %s" % (run_dir / "matrix.json", run_dir / "matrix.md"))
    return Outcome(render.table(results.load_matrix(run_dir)).rstrip("\n"))


def interop_grid(request: InteropRequest) -> Outcome:
    """Every ordered pair of the pins, each side in its own container: a results directory as
    `matrix` writes one, plus interop.md/.json/.html; the heatmaps and the odd cells printed."""
    if request.backend == "auto":
        ok, why = engine.available()
        if not ok:
            raise LabError("interop runs every pair in two containers and needs a Docker engine: %s" % why)
    run_dir, backend = open_run(request.out, "docker", request.targets)
    cells, repeat = request.cells, request.settings.repeat
    say("Results: %s (%d pins: %d pairs x %d patterns = %d cells x %d runs, %d cell(s) at a time)" % (
        run_dir, len(request.targets), len(request.targets) ** 2, len(cells) // max(1, len(request.targets) ** 2),
        len(cells), repeat, request.jobs))
    run_matrix(backend, request.targets, cells, request.settings, run_dir, request.params,
               Progress(len(cells) * repeat), jobs=request.jobs)
    return _grid(run_dir)


def _grid(run_dir: Path) -> Outcome:
    from lab import report_interop
    built = results.load_matrix(run_dir)
    grid = interop.build(built)
    results.write_text_atomic(run_dir / "interop.md", interop.markdown(grid))
    interop.save(run_dir, grid)
    results.write_text_atomic(run_dir / "interop.html", report_interop.render(grid))
    say("Wrote %s (matrix.json, matrix.md, cells/) and interop.md, interop.json, interop.html" % run_dir)
    return Outcome(interop.table(grid, built).rstrip("\n"))


def reproduce(request: ReproduceRequest) -> Outcome:
    """Every configuration the write-up publishes on every chosen target, each judged against
    the write-up's claim; or (request.judged) the saved verdicts of such a run judged again.
    Exit 1 when any target disagrees with the write-up."""
    if request.judged:
        run_dir = request.judged
        order = {t.name: i for i, t in enumerate(load_targets())}
        saved = sorted(results.load_verdicts(run_dir), key=lambda v: order.get(v.cell.target, len(order)))
        judgements = rep.judge_saved(saved)
        if not judgements:
            raise LabError("%s holds no verdict of a write-up configuration" % run_dir)
        if (run_dir / "reproduce.json").exists():
            header = results.read_json(run_dir / "reproduce.json", "reproduce")
        else:       # a run from before reproduce.json existed: what its verdicts themselves say
            first = judgements[0].verdict.runs[0].report["params"]
            header = {"run": run_dir.name, "runs per configuration": max(j.verdict.n for j in judgements),
                      "stall window": "%g s" % first["stall"], "re-judged": results.now_iso()}
    else:
        run_dir, header, judgements = _run_claims(request)
    text = rep.markdown(judgements, header, rep.EXPLANATIONS)
    results.write_text_atomic(run_dir / "reproduce.md", text)
    if request.markdown:
        results.write_text_atomic(request.markdown, text)
        say("Wrote %s" % request.markdown)
    return Outcome("\n".join(rep.lines(judgements)), 0 if all(j.agrees for j in judgements) else 1)


def _run_claims(request: ReproduceRequest):
    settings = request.settings
    todo = [(t, c) for t in request.targets for c in request.claims if rep.applies(c, t.draft)]
    for target, claim in todo[:1] + todo[-1:]:
        settings.check(claim.cell(target.name))           # bad flags fail before anything starts
    run_dir, backend = open_run(request.out, request.backend, request.targets)
    say("Results: %s (%d configurations x %d runs)" % (run_dir, len(todo), settings.repeat))
    judgements = []
    header = {"schema": "zmqlab.reproduce/1", "run": run_dir.name, "backend": backend.name,
              "runs per configuration": settings.repeat, "stall window": "%g s" % settings.stall}
    try:
        for target in request.targets:
            reason = backend.prepare(target)
            if reason:
                say("skipping %s: %s" % (target.name, reason))
                continue
            for claim in (c for t, c in todo if t is target):
                say("[%d/%d] %s on %s" % (len(judgements) + 1, len(todo), claim.title, target.name))
                verdict = run_cell(backend, target, claim.cell(target.name), settings)
                results.save_verdict(run_dir, verdict, sized=True)
                judgements.append(rep.judge(claim, verdict))
                say("  " + rep.lines([judgements[-1]])[-1].strip())
            backend.release(target)
    finally:
        backend.close()
        header.update(finished=results.now_iso(), complete=len(judgements) == len(todo))
        if judgements:
            results.write_json_atomic(run_dir / "reproduce.json", header, "reproduce")
    return run_dir, header, judgements


# ---- comparing and gating -----------------------------------------------------------------------

def compare(request: PairRequest) -> Outcome:
    """Two results directories as they are, or two targets run first on the same cells."""
    base, new = sweep.run_pair(request) if request.run else (request.base, request.new)
    return _comparison(cmp.compare(sweep.load(base), sweep.load(new)), request.markdown)


def upgrade_check(request: PairRequest) -> Outcome:
    base, new = sweep.run_pair(request)
    say("BASE %s\nNEW  %s" % (base, new))
    note = _rolling_upgrade(request, base, new) if request.rolling else ""
    comparison = cmp.compare(sweep.load(base), sweep.load(new))
    if note:
        comparison = dataclasses.replace(comparison, notes=comparison.notes + (note,))
    return _comparison(comparison, request.markdown)


def _rolling_upgrade(request: PairRequest, base_dir: Path, new_dir: Path) -> str:
    """FROM -> FROM, TO -> TO and the mixed pairs FROM -> TO, TO -> FROM in containers, added to
    the two run directories (lab.compare judges the pairs against FROM -> FROM); runs are added
    while a pair's intervals and FROM -> FROM's overlap, as run_pair does. Returns a note when
    they could not run (no Docker engine), else ''."""
    base_cells, new_cells = request.rolling_cells()
    if not base_cells:
        return "rolling upgrade (mixed pairs): not run: none of pubsub, pushpull, routerdealer was chosen"
    if request.backend == "local":
        return "rolling upgrade (mixed pairs): not run: the local backend runs no containers"
    ok, why = engine.available()
    if not ok:
        return "rolling upgrade (mixed pairs): not run: no Docker engine (%s)" % why
    pins = select(load_targets(), [request.base, request.new])
    backend = choose_backend("docker", new_dir.name + "-rolling", pins)
    settings = request.settings
    max_repeat = max(request.max_repeat or settings.repeat, settings.repeat)
    progress = Progress((len(base_cells) + len(new_cells)) * settings.repeat)
    ready = Readiness(backend, pins, progress)
    say("Rolling upgrade: %s and %s mixed, in containers over tcp" % (request.base, request.new))
    judged: dict = {}
    try:
        for cell in base_cells + new_cells:
            judged[cell.key] = judge_cell(backend, ready, cell, settings, progress)
        own = {c.pattern: c for c in base_cells}          # the FROM -> FROM each pair is judged against
        while True:
            undecided = [c for c in new_cells if not judged[c.key].skip_reason
                         and not judged[own[c.pattern].key].skip_reason
                         and cmp.judge(cmp.Side.of(judged[own[c.pattern].key]), cmp.Side.of(judged[c.key]))[1]
                         .startswith("within noise")
                         and max(judged[c.key].n, judged[own[c.pattern].key].n) + sweep.STEP <= max_repeat]
            if not undecided:
                break
            for cell in list({own[c.pattern].key: own[c.pattern] for c in undecided}.values()) + undecided:
                more = run_cell(backend, ready.by_name[cell.target], cell,
                                dataclasses.replace(settings, repeat=sweep.STEP), sender=ready.by_name[cell.sender_target])
                judged[cell.key] = judge_runs(cell, [r.report for r in judged[cell.key].runs + more.runs])
            say("  %d pair(s) still inside the noise: more runs" % len(undecided))
    finally:
        progress.close()
        backend.close()
        for run_dir, cells in ((base_dir, base_cells), (new_dir, new_cells)):   # what finished is kept
            if any(c.key in judged for c in cells):
                extend_run(run_dir, [judged[c.key] for c in cells if c.key in judged], backend.name)
    return ""


def sweep_gate(results_dir: str, baseline: str, markdown: str | None, allow_partial: bool) -> Outcome:
    md = check_output_file(markdown, "--markdown") if markdown is not None else None
    return _comparison(sweep.sweep_gate(results_dir, baseline, allow_partial), md)


def _comparison(comparison: cmp.Comparison, markdown: str | os.PathLike | None) -> Outcome:
    if markdown:
        results.write_text_atomic(markdown, cmp.markdown(comparison))
        say("comparison written to %s" % markdown)
    return Outcome(cmp.table(comparison).rstrip("\n"), comparison.exit_code)


def baseline(results_dir: str, path: str, allow_partial: bool) -> Outcome:
    written = sweep.refresh_baseline(results_dir, check_output_file(path, "--path"), allow_partial)
    return Outcome("baseline written to %s" % written)


def report(results_dir: str, html: bool, junit: bool, markdown: bool, out: str | None) -> Outcome:
    """HTML heatmap, JUnit XML and Markdown of a run (all three when none is chosen)."""
    folder = check_output_dir(out, "--out", "report folder") if out is not None else None
    if not (html or junit or markdown):
        html = junit = markdown = True
    text = render.markdown(sweep.load(results_dir)).rstrip("\n") if markdown else ""
    for path in sweep.write_reports(results_dir, html, junit, folder):
        say("wrote %s" % path)
    return Outcome(text)


def sweep_plan(targets: str) -> Outcome:
    return Outcome(sweep.plan_json(targets))


def sweep_merge(dirs: str, out: str) -> Outcome:
    folder = check_output_dir(out, "--out")
    return Outcome(str(sweep.sweep_merge([d for d in dirs.split(",") if d.strip()], folder)))


# ---- images, targets, tests, benchmarks ---------------------------------------------------------

def images(targets: str, rebuild_base: bool, base_source: str = "") -> Outcome:
    from lab import base_image, engine
    chosen = select(load_targets(), targets)
    source = base_image.base_source(base_source or None)      # a bad value: exit 2 before anything
    report_rows = ensure_images(engine.connect(), chosen, rebuild_base=rebuild_base, base_source=source)
    lines = ["%-24s %-8s %6.1fs  %s" % (r.target, r.status, r.seconds, r.detail) for r in report_rows]
    return Outcome("\n".join(lines), 1 if any(r.status == "failed" for r in report_rows) else 0)


def targets() -> Outcome:
    return Outcome("\n".join("%-24s pyzmq %-7s libzmq %-6s %-6s %-14s %s%s" % (
        t.name, t.pyzmq, t.libzmq, "draft" if t.draft else "", t.kind, t.suite,
        "  BROKEN: " + t.broken if t.broken else "") for t in load_targets()))


def test(docker: bool, slow: bool, k: str) -> Outcome:
    """Install what the tests need (host packages, as root), then run pytest; its status is ours."""
    from lab import hostsetup
    # As root they are installed; otherwise any that is missing is one line and exit 2, before
    # a single test runs (never half a suite).
    hostsetup.apt_install(hostsetup.TEST_PACKAGES, progress=lambda s: say("zmqlab: " + s))
    args = [sys.executable, "-m", "pytest", "-ra"]
    marks = [m for m, on in (("docker", docker), ("slow", slow)) if not on]
    if marks:
        args += ["-m", " and ".join("not " + m for m in marks)]
    if k:
        args += ["-k", k]
    return Outcome("", subprocess.call(args))


def bench(backend: str, time_matrix: bool, cold: bool, grid: bool = False, full_matrix: bool = False) -> Outcome:
    """`invoke bench`; --matrix/--grid/--full-matrix add the wall times of whole sweeps."""
    from lab import bench as bench_mod
    check_backend(backend)
    if cold and not time_matrix:
        raise LabError("--cold applies to --matrix only")
    d, i = MATRIX_DEFAULTS, INTEROP_DEFAULTS
    timed = []
    if time_matrix:
        timed.append(("the default matrix (`invoke matrix`)", "<= 20 min cold, <= 10 min warm",
                      lambda out: sweep.sweep_run(SweepRequest.from_cli(
                          d["targets"], d["patterns"], d["transports"], d["variants"], d["poll"], d["sync"],
                          d["threads"], d["msgs"], d["repeat"], d["stall"], d["sleep"], backend, out))))
    if grid:
        timed.append(("the interop grid: 11 pins, pubsub(+xpub)/pushpull/routerdealer, 3 runs, --jobs 2",
                      "<= 15 min", lambda out: interop_grid(InteropRequest.from_cli(
                          "all", "pubsub,pushpull,routerdealer", "none,xpub", "off", i["threads"], i["msgs"], 3,
                          i["stall"], i["sleep"], "auto", out, 2))))
    if full_matrix:
        timed.append(("the full matrix: --targets all --variants all --repeat 5, 20x200, --jobs 2", "<= 12 min",
                      lambda out: sweep.sweep_run(SweepRequest.from_cli(
                          "all", ",".join(REFERENCE_PATTERNS), "all", "all", "both", "none,xpub", 20, 200, 5, 2.0,
                          0.0, backend, out, jobs=2))))
    bench_mod.main(backend, timed=timed, cold=cold)
    return Outcome()