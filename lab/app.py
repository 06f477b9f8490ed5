"""The use cases behind the Invoke tasks: each takes one request (lab/requests.py, validated
once) or a few plain values, does its work through the core and the backends, and returns an
Outcome: the text for stdout and the exit code. tasks.py only parses, calls one function here
and prints. Progress goes to stderr as it happens (lab.session.say)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import compare as cmp
from lab import render, results
from lab import reproduce as rep
from lab import sweep
from lab.cells import Cell
from lab.errors import Interrupted, LabError
from lab.requests import (MATRIX_DEFAULTS, MAX_REPEAT, SWEEP_DEFAULTS, PairRequest, ReproduceRequest,
                          RunSettings, ScenarioRequest, SweepRequest, check_backend)
from lab.results import check_output_dir, check_output_file
from lab.runner import run_cell
from lab.session import choose_backend, ensure_images, open_run, say
from lab.targets import load_targets, select

__all__ = ["Interrupted", "LabError", "MATRIX_DEFAULTS", "MAX_REPEAT", "SWEEP_DEFAULTS", "Outcome",
           "PairRequest", "ReproduceRequest", "ScenarioRequest", "SweepRequest"]


@dataclass(frozen=True)
class Outcome:
    """What a task prints on stdout, and its exit status (0 fine, 1 checked thing failed)."""
    text: str = ""
    code: int = 0


# ---- running cells ------------------------------------------------------------------------------

def scenario(request: ScenarioRequest) -> Outcome:
    cell, settings, target = request.cell, request.settings, request.target
    backend = choose_backend(request.backend, results.new_run_id(), (target,))
    try:
        reason = backend.prepare(target)
        if reason:
            raise LabError("%s cannot run on the %s backend: %s" % (target.name, backend.name, reason))
        say("Running %s %d times (stall %.1f s, hard timeout %.0f s per run)" % (
            cell.key, settings.repeat, settings.stall, settings.hard_timeout(cell)))
        verdict = run_cell(backend, target, cell, settings, on_run=lambda n, r: say(
            "  run %d/%d: %s — %s" % (n, settings.repeat, r["outcome"], r["reason"])))
    finally:
        backend.close()
    if request.json_path:
        results.write_json_atomic(request.json_path, verdict.to_dict(), "verdict")
        say("verdict written to %s" % request.json_path)
    # 1 also when nothing could be judged (every run lost to the infrastructure): no check was made
    return Outcome(render.verdict_line(verdict), 1 if verdict.failed or verdict.n == 0 else 0)


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
    targets = select(load_targets(), list(dict.fromkeys(c.target for c in cells)))
    request = _Resumed(targets, cells, p, settings)
    done = [v for v in results.load_verdicts(folder) if v.cell.key in {c.key for c in cells}]
    chosen = old.backend.split("+")[0] if backend == "auto" else backend
    runner = choose_backend(chosen, folder.name, targets)
    say("Resuming %s: %d of %d cells left (x %d repeats)" % (folder, len(cells) - len(done), len(cells),
                                                             settings.repeat))
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


def _table(run_dir: Path) -> Outcome:
    say("Wrote %s and %s" % (run_dir / "matrix.json", run_dir / "matrix.md"))
    return Outcome(render.table(results.load_matrix(run_dir)).rstrip("\n"))


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
    return _comparison(cmp.compare(sweep.load(base), sweep.load(new)), request.markdown)


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


def bench(backend: str, time_matrix: bool, cold: bool) -> Outcome:
    from lab import bench as bench_mod
    check_backend(backend)
    if cold and not time_matrix:
        raise LabError("--cold applies to --matrix only")
    matrix_request = None
    if time_matrix:
        d = MATRIX_DEFAULTS
        matrix_request = lambda out: SweepRequest.from_cli(  # noqa: E731 (built when timed)
            d["targets"], d["patterns"], d["transports"], d["variants"], d["poll"], d["sync"], d["threads"],
            d["msgs"], d["repeat"], d["stall"], d["sleep"], backend, out)
    bench_mod.main(backend, matrix_request=matrix_request, run_matrix=sweep.sweep_run, cold=cold)
    return Outcome()
