"""The local backend: every run is a subprocess of this machine's Python, in one venv per
target made from the pinned wheel. It is the embedded default when no Docker engine answers,
so the lab works on any machine with Python; targets whose wheel does not fit the host
Python (or that build from source) are skipped with a reason, never failed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from lab import artifacts
from lab.backends.base import ProcessResult
from lab.errors import LabError
from lab.targets import Target

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = "%d.%d" % sys.version_info[:2]
CHECK = "import zmq; print(zmq.pyzmq_version(), zmq.zmq_version())"


def venv_root() -> Path:
    return artifacts.cache_root() / "venvs"


class LocalBackend:
    name = "local"
    description = "local processes on this machine (no containers: versions limited to wheels for Python %s)" % HOST_PYTHON

    def __init__(self, scenarios_parent: Path = REPO, progress: Callable[[str], None] = print):
        self.scenarios_parent = Path(scenarios_parent)
        self.progress = progress
        self.live: dict[int, subprocess.Popen] = {}   # pid -> process, for close() on Ctrl-C
        self.tmpdirs: set[str] = set()

    # --- targets -----------------------------------------------------------------------
    def skip_reason(self, target: Target) -> str | None:
        if target.broken:
            return "cannot be built here: " + target.broken
        if target.kind != "wheel" or target.wheel is None:
            return "needs the docker backend (kind %s builds from source)" % target.kind
        if target.python != HOST_PYTHON:
            return "needs the docker backend (its wheel is for Python %s; this host runs %s)" % (
                target.python, HOST_PYTHON)
        return None

    def python(self, target: Target) -> Path:
        return venv_root() / target.name / "bin" / "python"

    def prepare(self, target: Target) -> str | None:
        reason = self.skip_reason(target)
        if reason:
            return reason
        venv = venv_root() / target.name
        marker = venv / ".zmqlab-wheel"
        if marker.exists() and marker.read_text() == target.wheel.sha256:
            return None
        wheel = artifacts.fetch(target.wheel, self.progress)
        self.progress("making a venv for %s from %s" % (target.name, wheel.name))
        venv_root().mkdir(parents=True, exist_ok=True)
        # Build beside the final place and rename when complete, so an interrupted setup
        # never leaves a half-made venv that looks ready (we only ever run `python -m`,
        # which finds the venv from its own location, so the rename is safe).
        staging = Path(tempfile.mkdtemp(prefix=".%s-" % target.name, dir=venv_root()))
        python = staging / "bin" / "python"
        try:
            subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, capture_output=True, text=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                            "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, text=True)
            got = subprocess.run([str(python), "-c", CHECK], check=True, capture_output=True,
                                 text=True).stdout.split()
            if got != [target.pyzmq, target.libzmq]:
                raise LabError("the venv for %s reports pyzmq/libzmq %s, pinned %s/%s" % (
                    target.name, "/".join(got), target.pyzmq, target.libzmq))
            shutil.rmtree(venv, ignore_errors=True)
            staging.rename(venv)
        except subprocess.CalledProcessError as exc:
            last = ((exc.stderr or "").strip().splitlines() or ["no output"])[-1]
            raise LabError("cannot make the venv for %s: %s" % (target.name, last)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        marker.write_text(target.wheel.sha256)
        return None

    # --- runs ----------------------------------------------------------------------------
    def run(self, target: Target, argv: Sequence[str], timeout: float) -> ProcessResult:
        tmpdir = tempfile.mkdtemp(prefix="zmqlab-run-")   # ipc sockets live here; removed below
        self.tmpdirs.add(tmpdir)
        env = dict(os.environ, PYTHONPATH=str(self.scenarios_parent), TMPDIR=tmpdir,
                   PYTHONDONTWRITEBYTECODE="1")
        started = time.monotonic()
        # A session of its own: Ctrl-C at the terminal does not reach it, close() kills it.
        proc = subprocess.Popen([str(self.python(target)), "-m", "scenarios", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.live[proc.pid] = proc
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:       # interrupted (Ctrl-C) while waiting
                _kill_group(proc)
                proc.wait()
            self.live.pop(proc.pid, None)
            shutil.rmtree(tmpdir, ignore_errors=True)
            self.tmpdirs.discard(tmpdir)
        return ProcessResult(stdout=out, stderr=err, returncode=None if timed_out else proc.returncode,
                             timed_out=timed_out, wall_s=time.monotonic() - started)

    def release(self, target: Target) -> None:
        """Nothing to free: a venv is a cache, kept for the next run."""

    def close(self) -> None:
        for proc in list(self.live.values()):
            _kill_group(proc)
            proc.wait()
        self.live.clear()
        for tmpdir in list(self.tmpdirs):
            shutil.rmtree(tmpdir, ignore_errors=True)
        self.tmpdirs.clear()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the scenario's process group: only what this backend started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
