"""What the Invoke tasks do, composed from the core and the backends. tasks.py stays a thin
layer of argument parsing and help strings; everything here raises LabError for the user."""
from __future__ import annotations

import sys
from pathlib import Path

from lab import engine, render, results
from lab.backends.local import LocalBackend
from lab.cells import PATTERNS, XPUB_PATTERNS, Cell, expand, parse_list, parse_poll_modes
from lab.errors import LabError
from lab.runner import Progress, RunSettings, run_cell, run_matrix, scenario_flags
from lab.targets import Target, load_targets, select


# `invoke matrix` with no flags: a quick, useful sweep (two stock wheels and one draft build,
# every pattern, transport and poll/xpub variant, 3 runs each): a few minutes when warm.
MATRIX_DEFAULTS = dict(targets="pyzmq-25.1.2,pyzmq-27.3.0,pyzmq-25.1.2-draft", patterns="all",
                       transports="all", variants="primary", poll="both", sync="none,xpub",
                       threads=20, msgs=200, repeat=3, stall=2.0, sleep=0.0)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def choose_backend(name: str, run_id: str, targets: tuple[Target, ...] = ()):
    """'docker' or 'local', or 'auto': Docker when an engine answers, else local (said on screen).
    With Docker, images the targets need are built first (offline, cached)."""
    if name not in ("auto", "docker", "local"):
        raise LabError("unknown backend %r (known: auto, docker, local)" % name)
    if name == "auto":
        ok, why = engine.available()
        name = "docker" if ok else "local"
        if not ok:
            say("No Docker engine answers (%s): running in LOCAL PROCESSES instead." % why)
    if name == "local":
        backend = LocalBackend(progress=say)
    else:
        from lab.backends.docker import DockerBackend   # the SDK only when Docker is used
        client = engine.connect()
        if targets:
            ensure_images(client, targets)
        backend = DockerBackend(run_id, client=client)
    say("Backend: " + backend.description)
    return backend


def open_run(out: str, backend_name: str, targets: tuple[Target, ...]):
    """A fresh results/<run-id>/ and the backend that fills it. If the backend cannot be had
    (bad name, no engine), the still-empty run directory goes again: bad input leaves nothing."""
    run_dir = results.new_run_dir(out)
    try:
        return run_dir, choose_backend(backend_name, run_dir.name, targets)
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def ensure_images(client, targets, rebuild_base: bool = False):
    """Build what the targets need; up-to-date images are reported as skipped (a cheap check)."""
    from lab import images
    return images.build_images(client, targets, rebuild_base=rebuild_base, progress=say)


def scenario(target: str, pattern: str, transport: str, variant: str, threads: int, msgs: int,
             poll: bool, sync: str, settings: RunSettings, backend: str, json_path: str | None) -> int:
    from lab.cli import check_output_file
    names = [n.strip() for n in target.split(",")]
    if len(names) != 1 or not names[0]:
        raise LabError("--target takes one target name, got %r (matrix runs several)" % target)
    chosen = select(load_targets(), names)[0]
    cell = Cell(chosen.name, pattern, transport, variant or "default", poll, sync, threads, msgs)
    scenario_flags(cell, settings)
    settings.hard_timeout(cell)                 # a cell too large to bound fails here, before any run
    if json_path is not None:
        check_output_file(json_path, "--json")
    runner = choose_backend(backend, results.new_run_id(), (chosen,))
    try:
        reason = runner.prepare(chosen)
        if reason:
            raise LabError("%s cannot run on the %s backend: %s" % (chosen.name, runner.name, reason))
        say("Running %s %d times (stall %.1f s, hard timeout %.0f s per run)" % (
            cell.key, settings.repeat, settings.stall, settings.hard_timeout(cell)))
        verdict = run_cell(runner, chosen, cell, settings,
                           on_run=lambda n, r: say("  run %d/%d: %s — %s" % (n, settings.repeat, r["outcome"], r["reason"])))
    finally:
        runner.close()
    print(render.verdict_line(verdict))
    if json_path:
        results.write_json_atomic(json_path, verdict.to_dict(), "verdict")
        say("verdict written to %s" % json_path)
    return 1 if verdict.failed else 0


def matrix(targets: str, patterns: str, transports: str, variants: str, poll: str, sync: str,
           threads: int, msgs: int, settings: RunSettings, backend: str, out: str) -> Path:
    chosen = select(load_targets(), targets)
    chosen_patterns = parse_list(patterns, PATTERNS, "pattern")
    if sync == MATRIX_DEFAULTS["sync"] and not set(chosen_patterns) & set(XPUB_PATTERNS):
        sync = "none"           # a default is never an error: xpub just has nothing to apply to
    cells = expand(chosen, chosen_patterns, transports, poll_modes=parse_poll_modes(poll),
                   variants=None if variants == "primary" else variants,
                   sync_modes=parse_list(sync, ("none", "xpub"), "sync mode"),
                   threads=threads, msgs=msgs)
    scenario_flags(cells[0], settings)          # bad flags fail before anything is created
    run_dir, runner = open_run(out, backend, chosen)
    say("Results: %s (%d cells x %d repeats)" % (run_dir, len(cells), settings.repeat))
    params = {"threads": threads, "msgs": msgs, "repeat": settings.repeat, "stall": settings.stall,
              "sleep": settings.sleep}
    return _run_matrix(runner, chosen, cells, settings, run_dir, params)


def resume(run_dir: str, backend: str) -> Path:
    """Finish an interrupted `matrix` run in its own directory: only the cells without a
    verdict file run, with the run's original parameters; then matrix.json is complete."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise LabError("no results directory %s" % folder)
    if not (folder / results.MATRIX_FILE).exists():
        raise LabError("%s has no matrix.json: it is not a matrix run (or was killed before it began)" % folder)
    old = results.load_matrix(folder)
    p = old.params
    if "plan" not in p:
        raise LabError("%s was made by a lab without resume (no cell plan in its matrix.json)" % folder)
    cells = tuple(Cell.from_dict(c) for c in p["plan"])
    settings = RunSettings(repeat=p["repeat"], stall=p["stall"], sleep=p["sleep"], timeout=p.get("timeout"),
                           extra=tuple(p.get("extra") or ()))
    planned = {c.key for c in cells}
    done = [v for v in results.load_verdicts(folder) if v.cell.key in planned]
    missing = len(cells) - len(done)
    if not missing:
        say("%s is complete already (%d cells); rewriting matrix.json and matrix.md" % (folder, len(cells)))
    names = list(dict.fromkeys(c.target for c in cells))
    chosen = select(load_targets(), names)
    runner = choose_backend(old.backend.split("+")[0] if backend == "auto" else backend, folder.name, chosen)
    say("Resuming %s: %d of %d cells left (x %d repeats)" % (folder, missing, len(cells), settings.repeat))
    params = {k: v for k, v in p.items() if k not in ("plan", "timeout", "extra", "complete")}
    return _run_matrix(runner, chosen, cells, settings, folder, params, done)


def _run_matrix(runner, chosen, cells, settings, run_dir: Path, params: dict, done=()) -> Path:
    left = len(cells) - len(done)
    built = run_matrix(runner, chosen, cells, settings, run_dir, params,
                       Progress(left * settings.repeat), done=done)
    print(render.table(built))
    say("Wrote %s and %s" % (run_dir / "matrix.json", run_dir / "matrix.md"))
    return run_dir


def _check_writable(folder: Path) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        raise LabError("cannot write to %s: no such directory" % folder)
    probe = folder / ".zmqlab-write-probe"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise LabError("cannot write to %s: %s" % (folder, exc.strerror)) from None


def reproduce(targets: str, repeat: int, stall: float, backend: str, out: str,
              markdown_path: str | None, judged: str | None = None) -> int:
    """Run every configuration the write-up publishes on every chosen target, judge each
    against the write-up's claim, print agree/disagree, and write reproduce.md (also to
    `markdown_path`). With `judged` (a reproduce run directory), run nothing: judge the
    verdicts saved there again (e.g. after an explanation was added). Exit 1 when any
    target disagrees with the write-up."""
    from lab import reproduce as rep
    if markdown_path:
        _check_writable(Path(markdown_path).parent)
    if judged:
        run_dir = Path(judged)
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
        _write_reproduce(run_dir, header, judgements, markdown_path)
        return 0 if all(j.agrees for j in judgements) else 1
    chosen = select(load_targets(), targets)
    settings = RunSettings(repeat=repeat, stall=stall, sleep=rep.SEED_SLEEP_S)
    for claim in rep.CLAIMS:
        scenario_flags(claim.cell(chosen[0].name), settings)     # bad flags fail first
    run_dir, runner = open_run(out, backend, chosen)
    todo = [(t, c) for t in chosen for c in rep.CLAIMS if rep.applies(c, t.draft)]
    say("Results: %s (%d configurations x %d runs)" % (run_dir, len(todo), repeat))
    judgements = []
    try:
        for target in chosen:
            reason = runner.prepare(target)
            if reason:
                say("skipping %s: %s" % (target.name, reason))
                continue
            for claim in rep.CLAIMS:
                if not rep.applies(claim, target.draft):
                    continue
                say("[%d/%d] %s on %s" % (len(judgements) + 1, len(todo), claim.title, target.name))
                verdict = run_cell(runner, target, claim.cell(target.name), settings)
                results.save_verdict(run_dir, verdict)
                judgements.append(rep.judge(claim, verdict))
                say("  " + rep.lines([judgements[-1]])[-1].strip())
            runner.release(target)
    finally:
        runner.close()
        if judgements:
            header = {"schema": "zmqlab.reproduce/1", "run": run_dir.name, "backend": runner.name, "runs per configuration": repeat,
                      "stall window": "%g s" % stall, "finished": results.now_iso(),
                      "complete": len(judgements) == len(todo)}
            results.write_json_atomic(run_dir / "reproduce.json", header, "reproduce")
            _write_reproduce(run_dir, header, judgements, markdown_path)
    return 0 if all(j.agrees for j in judgements) else 1


def _write_reproduce(run_dir: Path, header: dict, judgements, markdown_path: str | None) -> None:
    from lab import reproduce as rep
    text = rep.markdown(judgements, header, rep.EXPLANATIONS)
    results.write_text_atomic(run_dir / "reproduce.md", text)
    if markdown_path:
        results.write_text_atomic(markdown_path, text)
        say("Wrote %s" % markdown_path)
    print("\n".join(rep.lines(judgements)))
