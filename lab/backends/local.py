"""The local backend: every run is a subprocess of this machine's Python, in one venv per
target made from the pinned wheel. It is the embedded default when no Docker engine answers,
so the lab works on any machine with Python; targets whose wheel does not fit the host
Python (or that build from source) are skipped with a reason, never failed.

Nothing outlives the lab, even a `kill -9` of it:
  * every scenario process gets PR_SET_PDEATHSIG (SIGKILL when the lab dies) and carries
    ZMQLAB_LAB=<lab id> in its environment; a process of a dead lab that still carries it is
    killed at the next start (the id is the lab's pid and start time, so a reused pid is no
    live lab);
  * each run's temporary directory (TMPDIR of the run: the harness's ipc sockets live in it),
    each venv being built and each partial download (lab/artifacts.py) are named after the
    lab id; the next start removes those of labs that are gone, as the Docker backend does
    for its containers.
Venvs are built under an exclusive file lock (flock) per target, so concurrent labs wait for
one build instead of racing each other (one deleting the venv the other runs from)."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from lab import artifacts, slots
from lab.backends.base import PeerResult, ProcessResult
from lab.errors import LabError
from lab.targets import Target, check_name

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = "%d.%d" % sys.version_info[:2]
CHECK = "import zmq; print(zmq.pyzmq_version(), zmq.zmq_version())"
LAB_ENV = "ZMQLAB_LAB"                 # marks every scenario process with the lab that started it
RUN_PREFIX = "zmqlab-run-"             # + <lab id>- + random: a run's TMPDIR
_LAB_ID = re.compile(r"(\d+)\.(\d+)-")  # <pid>.<start time in clock ticks>-
PR_SET_PDEATHSIG = 1


def venv_root() -> Path:
    return artifacts.cache_root() / "venvs"


# --- who is alive ---------------------------------------------------------------------------
def _start_ticks(pid: int) -> int:
    """Start time of `pid` in clock ticks since boot (0 where /proc cannot tell)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def lab_id(pid: int | None = None) -> str:
    """'<pid>.<start ticks>': names what a lab leaves on disk; a later process with the same
    pid has another start time, so it never passes for the lab."""
    pid = os.getpid() if pid is None else pid
    return "%d.%d" % (pid, _start_ticks(pid))


def lab_alive(ident: str) -> bool:
    match = _LAB_ID.match(ident + "-")
    if not match:
        return True                     # not ours to judge: leave it
    pid, start = int(match.group(1)), int(match.group(2))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                     # alive, another user's
    now = _start_ticks(pid)
    return not (start and now and now != start)


# What a lab leaves on disk, named after its id: (folder, name pattern with pid and start).
_LEFTOVERS = (
    ("tmp", re.compile(re.escape(RUN_PREFIX) + r"(\d+)\.(\d+)-")),          # a run's TMPDIR
    ("venvs", re.compile(r"\.build-(\d+)\.(\d+)-")),                       # a venv being built
    ("artifacts", re.compile(r"\..+\.(\d+)\.(\d+)-\w+\.part$")),          # a download
    ("artifacts", re.compile(r"\.pip-(\d+)\.(\d+)-")),                     # a pip download
)


def reap_orphans(tmp_root: str | Path | None = None, venvs: Path | None = None,
                 artifact_dir: Path | None = None) -> list[str]:
    """Kill scenario processes and remove run directories, half-built venvs and partial
    downloads that labs which died (kill -9, a crash) left behind. Returns what it removed."""
    gone: list[str] = []
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        marks = [v[len(LAB_ENV) + 1:].decode("ascii", "replace") for v in environ
                 if v.startswith(LAB_ENV.encode() + b"=")]
        if marks and not lab_alive(marks[0]):
            try:
                os.kill(int(entry), signal.SIGKILL)
                gone.append("process %s" % entry)
            except OSError:
                pass
    folders = {"tmp": Path(tmp_root or tempfile.gettempdir()), "venvs": Path(venvs or venv_root()),
               "artifacts": Path(artifact_dir or artifacts.artifact_dir())}
    for key, pattern in _LEFTOVERS:
        try:
            names = os.listdir(folders[key])
        except OSError:
            continue
        for name in names:
            match = pattern.match(name)
            if match and not lab_alive("%s.%s" % match.groups()):
                path = folders[key] / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                gone.append(str(path))
    return gone


@functools.lru_cache(maxsize=None)
def _prctl():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None                     # not Linux: close() and the next start's sweep remain


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the lab dies (Linux PR_SET_PDEATHSIG).
    libc is found here, in the lab, so the child only makes one call between fork and exec.
    (The signal follows the forking *thread*: run() waits for its child in the thread that
    started it, so that thread outlives the child.)"""
    parent = os.getpid()
    prctl = _prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # the lab died before the line above took effect
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


@contextlib.contextmanager
def _build_lock(folder: Path, name: str, progress: Callable[[str], None]) -> Iterator[None]:
    """Exclusive lock on <venvs>/.<name>.lock while one venv is built; another lab waits."""
    fd = os.open(folder / (".%s.lock" % name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("waiting for another lab that is making the venv for %s" % name)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                    # releases the lock


class LocalBackend:
    name = "local"
    description = "local processes on this machine (no containers: versions limited to wheels for Python %s)" % HOST_PYTHON

    def __init__(self, scenarios_parent: Path = REPO, progress: Callable[[str], None] = print):
        self.scenarios_parent = Path(scenarios_parent)
        self.progress = progress
        self.live: dict[int, subprocess.Popen] = {}   # pid -> process, for close() on Ctrl-C
        self.tmpdirs: set[str] = set()
        self.lab = lab_id()
        self.reaped = reap_orphans()
        if self.reaped:
            self.progress("removed %d leftovers of labs that died: %s" % (
                len(self.reaped), ", ".join(self.reaped[:3]) + (" ..." if len(self.reaped) > 3 else "")))

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

    def ready(self, target: Target) -> bool:
        marker = venv_root() / target.name / ".zmqlab-wheel"
        try:
            return marker.read_text() == target.wheel.sha256
        except OSError:
            return False

    def prepare(self, target: Target) -> str | None:
        reason = self.skip_reason(target)
        if reason:
            return reason
        check_name(target.name)          # the venv's folder name: never '..' or a path
        if self.ready(target):
            return None
        root = artifacts.cache_dir(venv_root())
        with _build_lock(root, target.name, self.progress):
            if self.ready(target):       # another lab made it while this one waited
                return None
            self._build(target, root)
        return None

    def _build(self, target: Target, root: Path) -> None:
        venv = root / target.name       # a checked name (lab.targets): one path component
        wheel = artifacts.fetch(target.wheel, self.progress)
        self.progress("making a venv for %s from %s" % (target.name, wheel.name))
        # Build beside the final place and rename when complete (marker included), so an
        # interrupted setup never leaves a half-made venv that looks ready (we only ever run
        # `python -m`, which finds the venv from its own location, so the rename is safe).
        # The staging name carries the lab id: a lab killed mid-build leaves it to be reaped.
        staging = Path(tempfile.mkdtemp(prefix=".build-%s-%s-" % (self.lab, target.name), dir=root))
        python = staging / "bin" / "python"
        run = dict(check=True, capture_output=True, text=True, preexec_fn=_die_with_parent())
        try:
            subprocess.run([sys.executable, "-m", "venv", str(staging)], **run)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                            "--disable-pip-version-check", str(wheel)], **run)
            got = subprocess.run([str(python), "-c", CHECK], **run).stdout.split()
            if got != [target.pyzmq, target.libzmq]:
                raise LabError("the venv for %s reports pyzmq/libzmq %s, pinned %s/%s" % (
                    target.name, "/".join(got), target.pyzmq, target.libzmq))
            (staging / ".zmqlab-wheel").write_text(target.wheel.sha256)
            if venv.parent != root or venv.name in ("", ".", ".."):
                raise LabError("refusing to replace %s: not a venv of the cache" % venv)
            shutil.rmtree(venv, ignore_errors=True)
            staging.rename(venv)
        except subprocess.CalledProcessError as exc:
            last = ((exc.stderr or "").strip().splitlines() or ["no output"])[-1]
            raise LabError("cannot make the venv for %s: %s" % (target.name, last)) from None
        except OSError as exc:
            raise LabError("cannot make the venv for %s in %s: %s" % (target.name, root, exc.strerror or exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --- runs ----------------------------------------------------------------------------
    def run(self, target: Target, argv: Sequence[str], timeout: float,
            on_state: slots.OnState | None = None) -> ProcessResult:
        # ipc sockets live here; removed below, or at the next start if the lab is killed
        tmpdir = tempfile.mkdtemp(prefix="%s%s-" % (RUN_PREFIX, self.lab))
        self.tmpdirs.add(tmpdir)
        env = dict(os.environ, PYTHONPATH=str(self.scenarios_parent), TMPDIR=tmpdir,
                   PYTHONDONTWRITEBYTECODE="1", **{LAB_ENV: self.lab, slots.STATE_ENV: "1"})
        started = time.monotonic()
        # A session of its own: Ctrl-C at the terminal does not reach it, close() kills it;
        # PR_SET_PDEATHSIG kills it if the lab dies without a close() (kill -9).
        proc = subprocess.Popen([str(self.python(target)), "-m", "scenarios", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_die_with_parent())
        self.live[proc.pid] = proc
        out, err = bytearray(), bytearray()
        states = slots.StateLines(on_state)

        def read_err() -> None:         # as it comes: the state lines matter while it runs
            for chunk in iter(lambda: proc.stderr.read1(65536), b""):
                err.extend(chunk)
                states.feed(chunk)

        readers = [threading.Thread(target=lambda: out.extend(proc.stdout.read()), daemon=True),
                   threading.Thread(target=read_err, daemon=True)]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
        finally:
            if proc.poll() is None:       # interrupted (Ctrl-C) while waiting
                _kill_group(proc)
                proc.wait()
            for reader in readers:        # a grandchild holding the pipes is in the killed group
                reader.join(5)
            self.live.pop(proc.pid, None)
            shutil.rmtree(tmpdir, ignore_errors=True)
            self.tmpdirs.discard(tmpdir)
        return ProcessResult(stdout=out.decode("utf-8", "replace"),
                             stderr=slots.strip(err.decode("utf-8", "replace")),
                             returncode=None if timed_out else proc.returncode,
                             timed_out=timed_out, wall_s=time.monotonic() - started)

    def run_peers(self, receiver: Target, sender: Target, argv: Sequence[str], timeout: float,
                  on_state: slots.OnState | None = None, faults: Sequence[object] = ()) -> PeerResult:
        raise LabError("the containers topology needs a Docker engine; local processes can run --topology processes")

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
