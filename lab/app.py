"""What the Invoke tasks do, composed from the core and the backends. tasks.py stays a thin
layer of argument parsing and help strings; everything here raises LabError for the user."""
from __future__ import annotations

import sys
from pathlib import Path

from lab import engine, render, results
from lab.backends.local import LocalBackend
from lab.cells import Cell, expand, parse_list, parse_poll_modes
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
    chosen = select(load_targets(), target)[0]
    cell = Cell(chosen.name, pattern, transport, variant or "default", poll, sync, threads, msgs)
    scenario_flags(cell, settings)
    if json_path:
        _check_writable(Path(json_path).parent)
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
    cells = expand(chosen, patterns, transports, poll_modes=parse_poll_modes(poll),
                   variants=None if variants == "primary" else variants,
                   sync_modes=parse_list(sync, ("none", "xpub"), "sync mode"),
                   threads=threads, msgs=msgs)
    scenario_flags(cells[0], settings)          # bad flags fail before anything is created
    run_dir, runner = open_run(out, backend, chosen)
    say("Results: %s (%d cells x %d repeats)" % (run_dir, len(cells), settings.repeat))
    params = {"threads": threads, "msgs": msgs, "repeat": settings.repeat, "stall": settings.stall,
              "sleep": settings.sleep}
    built = run_matrix(runner, chosen, cells, settings, run_dir, params,
                       Progress(len(cells) * settings.repeat))
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
