"""Regression workflows over results directories: the CI sweep (plan -> one run per target
-> merge -> gate against the baseline), comparing two runs or two targets, upgrade checks,
and reports. Every step is a function an Invoke task calls, so CI and a laptop run the same
code. Inputs are checked before anything is written: bad input never overwrites a file."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from lab import baseline as baseline_mod
from lab import compare as cmp
from lab import matrix as matrix_mod
from lab import render, results
from lab.errors import LabError
from lab.matrix import Matrix
from lab.requests import PairRequest, RunSettings, SweepRequest
from lab.runner import Progress, run_cell, run_matrix
from lab.session import open_run, say
from lab.targets import Target, load_targets, select
from lab.verdicts import Verdict, judge_runs, skipped

STEP = 5               # upgrade-check: runs added at a time while a cell's intervals overlap


# ---- locating results ---------------------------------------------------------------------

def run_dirs(path: str | Path, depth: int = 2) -> list[Path]:
    """A run directory (has matrix.json) is itself; a folder gives the runs at most `depth`
    levels below it (CI's artifact download nests them: parts/<artifact>/<run-id>/)."""
    path = Path(path)
    if not path.exists():
        raise LabError(f"no results directory {path}")
    if (path / results.MATRIX_FILE).is_file():
        return [path]
    found: list[Path] = []
    level = [path] if path.is_dir() else []
    for _ in range(depth):
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir())
        found += [p for p in level if (p / results.MATRIX_FILE).is_file()]
    if not found:
        raise LabError(f"{path} is not a zmqlab results directory (no {results.MATRIX_FILE} in it "
                       "or below it)")
    return sorted(found)


def one_run_dir(path: str | Path) -> Path:
    """The run directory itself, or a results root holding exactly one run."""
    found = run_dirs(path, depth=1)
    if len(found) > 1:
        raise LabError(f"{path} holds {len(found)} runs; name one of them (e.g. {found[-1]})")
    return found[0]


def load(path: str | Path) -> Matrix:
    return results.load_matrix(one_run_dir(path))


# ---- plan / run / merge / gate ---------------------------------------------------------------

def plan(targets: str = "all") -> dict:
    """The job matrix for GitHub's fromJSON(): one entry per runnable pinned target."""
    chosen = [t for t in select(load_targets(), targets) if not t.broken]
    if not chosen:
        raise LabError("no runnable targets to sweep")
    return {"include": [{"target": t.name} for t in chosen]}


def sweep_run(request: SweepRequest) -> Path:
    """One target's share of a sweep (or any matrix request), into a fresh OUT/<run-id>/."""
    run_dir, backend = open_run(request.out, request.backend, request.targets)
    say(f"Results: {run_dir} ({len(request.cells)} cells x {request.settings.repeat} repeats)")
    return run_into(request, run_dir, backend)


def run_into(request: SweepRequest, run_dir: Path, backend, done: Sequence[Verdict] = ()) -> Path:
    """Run the request's cells that have no verdict in `done` into `run_dir`."""
    left = len(request.cells) - len(done)
    run_matrix(backend, request.targets, request.cells, request.settings, run_dir, request.params,
               Progress(left * request.settings.repeat), done=done, jobs=request.jobs)
    return run_dir


def sweep_merge(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Merge per-target runs (run dirs or roots holding them) into a fresh OUT/<run-id>/."""
    if not paths:
        raise LabError("sweep-merge needs at least one results directory")
    dirs = [d for p in paths for d in run_dirs(p)]
    merged = matrix_mod.merge([results.load_matrix(d) for d in dirs])   # all read before any write
    run_dir = results.new_run_dir(out)
    merged = replace(merged, run_id=run_dir.name)
    for v in merged.verdicts:
        results.save_verdict(run_dir, v)
    results.save_matrix(run_dir, merged)
    results.write_text_atomic(run_dir / "matrix.md", render.markdown(merged))
    return run_dir


def load_baseline(path: str | Path = baseline_mod.DEFAULT_PATH) -> baseline_mod.Baseline:
    data = results.read_json(path, "baseline")
    return baseline_mod.from_dict(data, [t.name for t in load_targets()], source=str(path))


def load_whole(path: str | Path, allow_partial: bool, what: str) -> Matrix:
    """A run to gate on or take a baseline from: an interrupted one is refused unless asked."""
    m = load(path)
    if m.partial and not allow_partial:
        raise LabError(f"{path} is a partial run ({len(m.verdicts)} of {m.planned} cells): finish it "
                       f"with `matrix --resume`, or pass --allow-partial to {what} anyway")
    return m


def sweep_gate(results_path: str | Path, baseline_path: str | Path, allow_partial: bool = False) -> cmp.Comparison:
    base = load_baseline(baseline_path)
    return baseline_mod.gate(base, load_whole(results_path, allow_partial, "gate on it"))


def refresh_baseline(results_path: str | Path, baseline_path: str | Path, allow_partial: bool = False) -> Path:
    doc = baseline_mod.from_matrix(load_whole(results_path, allow_partial, "take a baseline from it"))
    baseline_mod.from_dict(doc, [t.name for t in load_targets()], source="the new baseline")
    return results.write_json_atomic(baseline_path, doc, "baseline")


# ---- comparing targets: run both on the same cells, adding runs where the noise decides ----

def _more_runs(runner, target: Target, verdict: Verdict, settings: RunSettings, extra: int) -> Verdict:
    more = run_cell(runner, target, verdict.cell, replace(settings, repeat=extra))
    return judge_runs(verdict.cell, [r.report for r in verdict.runs + more.runs])


def run_pair(request: PairRequest, step: int = STEP, open_run=open_run) -> tuple[Path, Path]:
    """Run both targets on the same cells into two fresh run dirs; while a cell's intervals
    overlap but its rates differ, add `step` runs to both sides, up to `max_repeat` each.
    (`open_run`: where the first run dir and the backend come from; tests hand in a fake.)"""
    pair = select(load_targets(), [request.base, request.new])
    if pair[0].name == pair[1].name:
        raise LabError("compare two different targets")
    settings = request.settings
    max_repeat = max(request.max_repeat or settings.repeat, settings.repeat)
    cells = [request.axes.cells([t], request.threads, request.msgs) for t in pair]
    dirs = [None, None]
    dirs[0], backend = open_run(request.out, request.backend, tuple(pair))
    dirs[1] = results.new_run_dir(request.out)
    params = dict(request.params, max_repeat=max_repeat)
    sides: list[dict] = [{}, {}]

    def judged(i: int, verdict: Verdict) -> None:
        # Saved as soon as judged, so an interrupted check keeps every finished cell.
        sides[i][verdict.cell.column] = verdict
        results.save_verdict(dirs[i], verdict)

    try:
        for i, target in enumerate(pair):
            reason = backend.prepare(target)
            for cell in cells[i]:
                judged(i, skipped(cell, reason) if reason else run_cell(backend, target, cell, settings))
                say(render.verdict_line(sides[i][cell.column]))
        while undecided := _undecided(sides, step, max_repeat):
            for col in undecided:
                for i, target in enumerate(pair):
                    judged(i, _more_runs(backend, target, sides[i][col], settings, step))
                say(f"  {'/'.join(col)}: still inside the noise, now {sides[1][col].n} runs each")
    finally:
        backend.close()
        for run_dir, side, target, planned in zip(dirs, sides, pair, cells):
            if side:
                built = matrix_mod.build(run_dir.name, backend.name, side.values(),
                                         params=dict(params, complete=len(side) == len(planned),
                                                     plan=[c.to_dict() for c in planned]),
                                         targets=[target], created=results.now_iso())
                results.save_matrix(run_dir, built)
                results.write_text_atomic(run_dir / "matrix.md", render.markdown(built))
    return dirs[0], dirs[1]


def _undecided(sides: list[dict], step: int, max_repeat: int) -> list:
    """Columns both sides ran whose intervals overlap while the rates differ, with room left."""
    return [col for col in sides[0] if col in sides[1]
            and cmp.judge(cmp.Side.of(sides[0][col]), cmp.Side.of(sides[1][col]))[1].startswith("within noise")
            and max(sides[0][col].n, sides[1][col].n) + step <= max_repeat]


# ---- reports ------------------------------------------------------------------------------

def write_reports(results_path: str | Path, html: bool, junit: bool,
                  out_dir: str | Path | None = None) -> list[Path]:
    from lab import report_html, report_junit
    run_dir = one_run_dir(results_path)
    m = results.load_matrix(run_dir)
    target = Path(out_dir) if out_dir else run_dir
    written = []
    if html:
        written.append(results.write_text_atomic(target / "report.html", report_html.render(m)))
    if junit:
        written.append(results.write_text_atomic(target / "junit.xml", report_junit.render(m)))
    if html and (run_dir / "interop.json").exists():
        # an interop run: its grid page again, from the same matrix; its interop.json is checked
        # first, so a corrupt one is a one-line error rather than a page that disagrees with it
        from lab import interop, report_interop
        interop.load(run_dir)
        written.append(results.write_text_atomic(target / "interop.html", report_interop.render(interop.build(m))))
    return written


def plan_json(targets: str = "all") -> str:
    return json.dumps(plan(targets), separators=(",", ":"))
