"""The local backend leaves nothing behind: scenario processes die with the lab (even a kill -9
of it), each run's temporary files carry the lab's id and the next start removes those of labs
that are gone, and concurrent labs build a target's venv once, one waiting for the other."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lab.backends import local
from lab.backends.local import LAB_ENV, LocalBackend, lab_alive, lab_id, reap_orphans
from lab.errors import LabError
from lab.targets import Artifact, Target

REPO = Path(__file__).resolve().parents[1]
TARGET = "pyzmq-25.1.2"


def dead_lab_id() -> str:
    """The id a lab had that has exited (a process that ran and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    ident = lab_id(proc.pid)
    proc.wait()
    return ident


def marked_processes(mark_prefix: str) -> list[int]:
    """Pids whose environment holds ZMQLAB_LAB=<mark_prefix>... (our own marker)."""
    key = ("%s=%s" % (LAB_ENV, mark_prefix)).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path("/proc/%s/environ" % entry).read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(key) for v in environ):
            found.append(int(entry))
    return found


def test_lab_id_names_this_process_and_tells_the_living_from_the_dead():
    me = lab_id()
    assert me.startswith("%d." % os.getpid()) and lab_alive(me)
    assert not lab_alive(dead_lab_id())
    pid, start = me.split(".")
    if start != "0":   # same pid, another start time: a reused pid is not the lab
        assert not lab_alive("%s.%d" % (pid, int(start) + 1))
    assert lab_alive("not-an-id"), "names the lab did not make are never judged dead"


def test_reap_removes_what_dead_labs_left_and_nothing_else(tmp_path):
    tmp, venvs, arts = tmp_path / "tmp", tmp_path / "venvs", tmp_path / "artifacts"
    dead, me = dead_lab_id(), lab_id()
    doomed_dirs = [tmp / ("zmqlab-run-%s-abc" % dead), venvs / (".build-%s-pyzmq-1-xyz" % dead),
                   arts / (".pip-%s-k2j_x" % dead)]
    kept_dirs = [tmp / ("zmqlab-run-%s-def" % me), tmp / "zmqlab-run-legacy8ch", tmp / "zmqlab-other",
                 venvs / (".build-%s-pyzmq-1-uvw" % me), venvs / "pyzmq-1"]
    for d in doomed_dirs + kept_dirs:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "control").write_text("x")
    doomed_files = [arts / (".pyzmq-1-py3-none-any.whl.%s-a1b2c3_d.part" % dead)]
    kept_files = [arts / (".pyzmq-1-py3-none-any.whl.%s-e4f5g6h7.part" % me), arts / "pyzmq-1-py3-none-any.whl"]
    for f in doomed_files + kept_files:
        f.write_text("x")
    gone = reap_orphans(tmp, venvs, arts)
    assert sorted(gone) == sorted(str(d) for d in doomed_dirs + doomed_files)
    assert not any(d.exists() for d in doomed_dirs + doomed_files)
    assert all((d / "sub" / "control").exists() for d in kept_dirs) and all(f.exists() for f in kept_files)


def test_reap_kills_a_marked_process_of_a_dead_lab_only():
    dead = dead_lab_id()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen(sleeper, env=dict(os.environ, **{LAB_ENV: dead}))
    ours = subprocess.Popen(sleeper, env=dict(os.environ, **{LAB_ENV: lab_id()}))
    try:
        time.sleep(0.2)    # the environment is readable once exec is done
        nowhere = Path("/nonexistent-zmqlab")
        gone = reap_orphans(nowhere, nowhere, nowhere)
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert "process %d" % orphan.pid in gone
        assert ours.poll() is None, "a live lab's process must be left alone"
    finally:
        for p in (orphan, ours):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_a_new_backend_reaps_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(local.tempfile, "tempdir", str(tmp_path))
    leftover = tmp_path / ("zmqlab-run-%s-abc" % dead_lab_id())
    leftover.mkdir()
    said = []
    backend = LocalBackend(progress=said.append)
    assert not leftover.exists() and str(leftover) in backend.reaped
    assert said and "labs that died" in said[0]


@pytest.fixture(scope="module")
def scenario_venv():
    """The local venv of TARGET in the user's cache (what `./zmqlab scenario --backend local`
    uses), made once if missing; skipped only when it cannot be made here."""
    from lab.targets import load_targets, select
    try:
        reason = LocalBackend(progress=lambda s: None).prepare(select(load_targets(), TARGET)[0])
    except LabError as exc:
        pytest.skip("cannot make the local venv of %s: %s" % (TARGET, exc))
    if reason:
        pytest.skip(reason)


def test_kill_9_of_the_lab_kills_its_scenario_and_the_next_start_reaps_its_files(scenario_venv):
    """A lab runs a long scenario (ipc: the harness makes its socket dir in the run's TMPDIR);
    kill -9 of the lab; its scenario process is gone within seconds; the next start removes
    the run directory it left."""
    tmp = Path(tempfile.mkdtemp(prefix="zl-", dir="/tmp"))   # short: ipc paths have a length limit
    env = dict(os.environ, TMPDIR=str(tmp))
    lab = subprocess.Popen(["./zmqlab", "scenario", "--backend", "local", "--target", TARGET,
                            "--pattern", "pushpull", "--transport", "ipc", "--threads", "2",
                            "--msgs", "10", "--sleep", "60", "--stall", "2", "--repeat", "1"],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mark = "%d." % lab.pid
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not marked_processes(mark) and lab.poll() is None:
            time.sleep(0.1)
        scenario = marked_processes(mark)
        assert scenario, "no scenario process started: %s" % (lab.stderr.read().decode() if lab.poll() is not None else "")
        time.sleep(0.5)     # it is inside its --sleep now, with its ipc directory made
        runs = list(tmp.glob("zmqlab-run-%s*" % mark))
        assert len(runs) == 1 and any(runs[0].iterdir()), "the run's TMPDIR names the lab and holds the ipc dir"
        lab.send_signal(signal.SIGKILL)
        lab.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and marked_processes(mark):
            time.sleep(0.05)
        assert marked_processes(mark) == [], "scenario processes outlived the lab"
        assert runs[0].exists(), "kill -9 gives the lab no chance to clean up"
        reap_orphans(tmp)     # what the next start does (its other folders: the user's cache)
        assert not runs[0].exists()
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        for pid in marked_processes(mark):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def _wheel_target(name="pyzmq-fake") -> Target:
    return Target(name=name, kind="wheel", pyzmq="1", libzmq="1", draft=False, suite="bookworm",
                  python=local.HOST_PYTHON,
                  artifacts=(Artifact("pyzmq_fake-1-py3-none-any.whl", "a" * 64),))


def test_concurrent_prepares_build_once_and_the_second_waits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    builds, said = [], []

    def slow_build(self, target, root):
        builds.append(target.name)
        time.sleep(0.5)
        venv = root / target.name
        venv.mkdir()
        (venv / ".zmqlab-wheel").write_text(target.wheel.sha256)

    monkeypatch.setattr(LocalBackend, "_build", slow_build)
    target = _wheel_target()
    backends = [LocalBackend(progress=said.append) for _ in range(2)]
    results = []
    threads = [threading.Thread(target=lambda b=b: results.append(b.prepare(target))) for b in backends]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=10)
    assert results == [None, None]
    assert builds == [target.name], "two labs built the same venv"
    assert any("waiting for another lab" in s for s in said)


def test_the_build_lock_is_a_real_flock_across_processes(tmp_path):
    """Another process holding the lock makes prepare wait (flock, not an in-process lock)."""
    lock = tmp_path / ".pyzmq-fake.lock"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(0.8)\n",
                               str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        said = []
        started = time.monotonic()
        with local._build_lock(tmp_path, "pyzmq-fake", said.append):
            waited = time.monotonic() - started
        assert waited > 0.3 and said
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["..", "../x", "a/b", ".", ".hidden", ""])
def test_a_target_name_that_is_a_path_never_reaches_the_cache(tmp_path, monkeypatch, name):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "zmqlab" / "venvs" / "keep").mkdir(parents=True)
    backend = LocalBackend(progress=lambda s: None)
    with pytest.raises(LabError, match="not allowed"):
        backend.prepare(_wheel_target(name))
    assert (tmp_path / "cache" / "zmqlab" / "venvs" / "keep").is_dir()


def test_an_unwritable_cache_is_one_line(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/zmqlab-no-cache")
    backend = LocalBackend(progress=lambda s: None)
    with pytest.raises(LabError) as err:
        backend.prepare(_wheel_target())
    assert "cannot use the cache directory" in str(err.value) and "\n" not in str(err.value)
