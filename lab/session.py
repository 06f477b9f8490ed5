"""Where a use case gets its backend and its results directory: the one place that picks
Docker or local processes (and says so on screen), and builds the images a run needs first.
The app, the sweep and the bench all come here; none of them imports another."""
from __future__ import annotations

import sys
from pathlib import Path

from lab import engine, results
from lab.errors import LabError
from lab.requests import BACKENDS
from lab.targets import Target


def say(text: str) -> None:
    """Progress and notes for the person at the terminal: stderr, so stdout stays the result."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def ensure_images(client, targets, rebuild_base: bool = False, base_source: str | None = None):
    """Build what the targets need; up-to-date images are reported as skipped (a cheap check).
    base_source: auto/registry/bootstrap; None takes $ZMQLAB_BASE_SOURCE, else auto."""
    from lab import images
    return images.build_images(client, targets, rebuild_base=rebuild_base, progress=say,
                               base_source=base_source)


def choose_backend(name: str, run_id: str, targets: tuple[Target, ...] = ()):
    """'docker' or 'local', or 'auto': Docker when an engine answers, else local (said on screen).
    With Docker, images the targets need are built first (offline, cached)."""
    if name not in BACKENDS:
        raise LabError("unknown backend %r (known: %s)" % (name, ", ".join(BACKENDS)))
    if name == "auto":
        ok, why = engine.available()
        name = "docker" if ok else "local"
        if not ok:
            say("No Docker engine answers (%s): running in LOCAL PROCESSES instead." % why)
    if name == "local":
        from lab.backends.local import LocalBackend
        backend = LocalBackend(progress=say)
    else:
        from lab.backends.docker import DockerBackend   # the SDK only when Docker is used
        client = engine.connect()
        if targets:
            ensure_images(client, targets)
        backend = DockerBackend(run_id, client=client)
    say("Backend: " + backend.description)
    return backend


def open_run(out: str | Path, backend_name: str, targets: tuple[Target, ...]):
    """A fresh OUT/<run-id>/ and the backend that fills it. If the backend cannot be had
    (no engine), the still-empty run directory goes again: bad input leaves nothing."""
    run_dir = results.new_run_dir(out)
    try:
        return run_dir, choose_backend(backend_name, run_dir.name, targets)
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
