"""Docker backend: real containers on the local engine, no mocks.

Tests marked `docker` need an engine and a target image. They skip with the reason when
either is missing, except when ZMQLAB_REQUIRE_DOCKER=1 (CI), where they fail instead.

The image defaults to zmqlab-target:pyzmq-25.1.2 (checked to import zmq); another image
that honours the contract (/opt/venv/bin/python, Debian-like /tmp) can be named with
ZMQLAB_TEST_IMAGE=repo:tag, in which case the zmq import check is left out.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import docker_unavailable

from lab import engine
from lab.errors import LabError
from lab.targets import Target, load_targets

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "zmqlab-target:pyzmq-25.1.2"

# The stand-in scenario program bind-mounted instead of the repo's scenarios/.
SCENARIO_MAIN = r'''
import errno, json, os, socket, sys, time

def sandbox():
    facts = {"uid": os.getuid(), "gid": os.getgid(), "tmpdir": os.environ.get("TMPDIR"),
             "net": sorted(os.listdir("/sys/class/net")),
             "netdev": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])}
    try:
        open("/rootfs-probe", "w")
        facts["root_write"] = "ok"
    except OSError as e:
        facts["root_write"] = errno.errorcode[e.errno]
    try:
        open("/opt/zmqlab/scenarios/probe", "w")
        facts["scenarios_write"] = "ok"
    except OSError as e:
        facts["scenarios_write"] = errno.errorcode[e.errno]
    with open("/tmp/probe", "w") as f:
        f.write("x")
    facts["tmp_write"] = "ok"
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    facts["cap_eff"] = status["CapEff"].strip()
    facts["no_new_privs"] = status["NoNewPrivs"].strip()
    for p in ("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"):
        if os.path.exists(p):
            facts["pids_max"] = open(p).read().strip()
    for p in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"):
        if os.path.exists(p):
            facts["mem_max"] = open(p).read().strip()
    srv = socket.socket()                       # loopback tcp still serves
    srv.bind(("127.0.0.1", 0)); srv.listen(1)
    cli = socket.create_connection(srv.getsockname(), timeout=2)
    conn, _ = srv.accept(); cli.sendall(b"ping"); facts["loopback"] = conn.recv(4).decode()
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=1)
        facts["outside"] = "reached"
    except OSError as e:
        facts["outside"] = errno.errorcode.get(e.errno, str(e))
    return facts

cmd = sys.argv[1] if len(sys.argv) > 1 else "echo"
if cmd == "echo":
    print(json.dumps({"argv": sys.argv[1:], "cwd_ok": True}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
elif cmd == "sleep":
    print("started", flush=True)
    time.sleep(100)
elif cmd == "escape":
    # a child that drops the lab's cell token from its environment and keeps stdout open
    import subprocess
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"], env={})
    print("forked", flush=True)
    time.sleep(100)
elif cmd == "undumpable":
    # PR_SET_DUMPABLE 0 hides /proc/<pid>/environ from the lab's killing exec
    import ctypes
    assert ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0
    print("hidden", flush=True)
    time.sleep(100)
elif cmd == "ps":
    me = os.getpid()
    print(json.dumps(sorted(open("/proc/%s/cmdline" % p, "rb").read().decode().replace("\0", " ")
                            for p in os.listdir("/proc") if p.isdigit() and int(p) != me)))
elif cmd == "sandbox":
    print(json.dumps(sandbox()))
'''


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def client(engine_client):
    return engine_client


@pytest.fixture(scope="session")
def image(client, built_images):
    """(image repo, Target, import to check) of the image the tests run in."""
    import docker.errors
    name = os.environ.get("ZMQLAB_TEST_IMAGE", DEFAULT_IMAGE)
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        docker_unavailable(f"image {name} is not built (run `invoke images`, or set ZMQLAB_TEST_IMAGE)")
    repo, tag = name.rsplit(":", 1)
    if name == DEFAULT_IMAGE:
        target = next(t for t in load_targets() if t.name == tag)
        return repo, target, "zmq"
    return repo, Target(name=tag, kind="wheel", pyzmq="?", libzmq="?", draft=False,
                        suite="bookworm", python="3.11"), None


@pytest.fixture
def scenarios_dir(tmp_path):
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "__main__.py").write_text(textwrap.dedent(SCENARIO_MAIN))
    tmp_path.chmod(0o755)
    return d


def _run_containers(client, run_id):
    return client.containers.list(all=True, ignore_removed=True,
                                  filters={"label": f"{engine.LABEL_RUN}={run_id}"})


@pytest.fixture(params=["exec", "container"])
def backend(request, client, image, scenarios_dir):
    from lab.backends.docker import DockerBackend
    repo, _, check = image
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=client, scenarios_dir=scenarios_dir, mode=request.param,
                      image_repo=repo, check_import=check)
    yield b
    b.close()
    assert _run_containers(client, run_id) == []


@pytest.fixture
def exec_backend(client, image, scenarios_dir):
    from lab.backends.docker import DockerBackend
    repo, _, check = image
    b = DockerBackend(f"test-{uuid.uuid4().hex[:8]}", client=client,
                      scenarios_dir=scenarios_dir, image_repo=repo, check_import=check)
    yield b
    b.close()


# ------------------------------------------------------------------ real containers

@pytest.mark.docker
def test_prepare_accepts_the_image(backend, image):
    assert backend.prepare(image[1]) is None


@pytest.mark.docker
def test_run_returns_stdout_stderr_and_exit_code(backend, image):
    target = image[1]
    res = backend.run(target, ["echo", "0"], timeout=30)
    assert res.returncode == 0 and not res.timed_out, res
    assert json.loads(res.stdout) == {"argv": ["echo", "0"], "cwd_ok": True}
    assert res.stderr.strip() == "to stderr"
    res = backend.run(target, ["echo", "3"], timeout=30)
    assert res.returncode == 3 and not res.timed_out


@pytest.mark.docker
def test_hard_timeout_kills_and_the_next_run_works(backend, image):
    target = image[1]
    backend.run(target, ["echo"], timeout=30)      # container up: time the cell alone
    t0 = time.monotonic()
    res = backend.run(target, ["sleep"], timeout=2)
    elapsed = time.monotonic() - t0
    assert res.timed_out and res.returncode is None, res
    assert elapsed <= 2 + 1, elapsed
    assert res.wall_s >= 2
    res = backend.run(target, ["echo", "0"], timeout=30)
    assert res.returncode == 0 and json.loads(res.stdout)["argv"] == ["echo", "0"]


def _processes(backend, target):
    res = backend.run(target, ["ps"], timeout=30)
    assert res.returncode == 0, res
    return json.loads(res.stdout)


@pytest.mark.docker
def test_hard_timeout_also_kills_children_that_drop_the_cell_token(exec_backend, image):
    target = image[1]
    before = _processes(exec_backend, target)            # docker-init and the idle python
    res = exec_backend.run(target, ["escape"], timeout=2)
    assert res.timed_out and res.returncode is None and res.stdout == "forked\n", res
    assert _processes(exec_backend, target) == before     # no stray sleeper left


@pytest.mark.docker
def test_when_the_cell_cannot_be_killed_inside_its_container_is_replaced(exec_backend, image,
                                                                         client):
    import docker.errors
    """A cell the killing exec cannot see (non-dumpable: its environment is unreadable) is
    ended by killing its whole container; a timeout is reported and the next cell gets a
    fresh container."""
    target = image[1]
    assert exec_backend.run(target, ["echo"], timeout=30).returncode == 0
    first = exec_backend._containers[target.name].id
    t0 = time.monotonic()
    res = exec_backend.run(target, ["undumpable"], timeout=3)
    assert res.timed_out and res.returncode is None, res
    assert time.monotonic() - t0 < 3 + 2 * 1.0 + 5
    res = exec_backend.run(target, ["echo", "0"], timeout=30)
    assert res.returncode == 0, res
    assert exec_backend._containers[target.name].id != first
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(first)


@pytest.mark.docker
def test_concurrent_cells_share_the_container_and_keep_their_own_output(exec_backend, image):
    from concurrent.futures import ThreadPoolExecutor
    target = image[1]
    argvs = [["echo", str(i)] for i in range(6)] + [["sleep"]]
    with ThreadPoolExecutor(len(argvs)) as pool:
        results = list(pool.map(lambda a: exec_backend.run(target, a, timeout=4), argvs))
    for i, res in enumerate(results[:-1]):
        assert res.returncode == i and json.loads(res.stdout)["argv"] == ["echo", str(i)], res
    assert results[-1].timed_out                         # killing one cell spares the others
    assert len(exec_backend._containers) == 1


@pytest.mark.docker
def test_a_container_removed_behind_the_labs_back_is_replaced(exec_backend, image):
    target = image[1]
    assert exec_backend.run(target, ["echo"], timeout=30).returncode == 0
    exec_backend._containers[target.name].remove(force=True)
    assert exec_backend.run(target, ["echo", "0"], timeout=30).returncode == 0


@pytest.mark.docker
def test_sandbox_from_inside(backend, image):
    res = backend.run(image[1], ["sandbox"], timeout=30)
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)
    assert (facts["uid"], facts["gid"]) == (65534, 65534)
    assert facts["net"] == ["lo"] and facts["netdev"] == ["lo"]
    assert facts["root_write"] == "EROFS"
    # the scenarios come through the API into a volume of the container's own (never a host
    # path): root's files, which the sandbox's uid cannot change
    assert facts["scenarios_write"] == "EACCES"
    assert facts["tmp_write"] == "ok" and facts["tmpdir"] == "/tmp"
    assert facts["loopback"] == "ping"
    assert facts["outside"] in ("ENETUNREACH", "EHOSTUNREACH", "ENETDOWN")
    assert int(facts["cap_eff"], 16) == 0
    assert facts["no_new_privs"] == "1"
    assert facts["pids_max"] == "512"
    assert int(facts["mem_max"]) == 512 * 1024 * 1024


def test_the_scenarios_archive_is_deterministic_and_leaves_bytecode_out(tmp_path):
    import io
    import tarfile
    from lab.backends.docker import scenarios_archive
    src = tmp_path / "s"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__main__.py").write_text("print(1)\n")
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (src / "sub").mkdir()
    (src / "sub" / "a.py").write_text("A = 1\n")
    data, digest = scenarios_archive(src)
    os.utime(src / "__main__.py", (1, 1))               # times and owners do not count
    assert scenarios_archive(src) == (data, digest) and digest.startswith("sha256:")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m.name, m.mtime, m.uid, oct(m.mode)) for m in tar.getmembers()]
    assert members == [("__main__.py", 0, 0, "0o644"), ("sub", 0, 0, "0o755"), ("sub/a.py", 0, 0, "0o644")]
    (src / "sub" / "a.py").write_text("A = 2\n")
    assert scenarios_archive(src)[1] != digest


@pytest.mark.docker
def test_no_host_path_is_in_the_engines_view(exec_backend, image, scenarios_dir):
    """The scenarios reach the container through put_archive into a volume of the run (the
    engine may be remote): no bind mount; the report's provenance names the scenarios' hash."""
    target = image[1]
    res = exec_backend.run(target, ["echo", "0"], timeout=30)
    assert res.returncode == 0, res.stderr
    (container,) = _run_containers(exec_backend.client, exec_backend.run_id)
    mounts = container.attrs["Mounts"]
    assert [m["Type"] for m in mounts] == ["volume"] and mounts[0]["Destination"] == "/opt/zmqlab/scenarios"
    assert str(scenarios_dir) not in json.dumps(container.attrs)
    volume = exec_backend.client.volumes.get(mounts[0]["Name"])
    assert volume.attrs["Labels"][engine.LABEL_RUN] == exec_backend.run_id     # cleanup finds it
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True


@pytest.mark.docker
def test_close_removes_every_object_of_the_run_and_is_idempotent(client, image, scenarios_dir):
    from lab.backends.docker import DockerBackend
    repo, target, _ = image
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=client, scenarios_dir=scenarios_dir, image_repo=repo,
                      check_import=None)
    assert b.run(target, ["echo"], timeout=30).returncode == 0
    client.networks.create(f"zmqlab-{run_id}", driver="bridge", internal=True, labels=b.labels)
    flt = {"label": f"{engine.LABEL_RUN}={run_id}"}
    assert _run_containers(client, run_id) and client.networks.list(filters=flt)
    b.close()
    b.close()
    assert _run_containers(client, run_id) == []
    assert client.networks.list(filters=flt) == []
    assert b.close_errors == []
    with pytest.raises(LabError, match="closed"):
        b.run(target, ["echo"], timeout=30)


CRASHING_LAB = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from lab.backends.docker import DockerBackend
from lab.targets import Target
t = Target(name={tag!r}, kind="wheel", pyzmq="?", libzmq="?", draft=False, suite="bookworm", python="3.11")
b = DockerBackend({run_id!r}, scenarios_dir={sdir!r}, image_repo={repo_img!r}, check_import=None)
assert b.run(t, ["echo"], timeout=30).returncode == 0
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.docker
def test_leftovers_of_a_killed_lab_are_swept_but_a_live_labs_are_not(client, image,
                                                                     scenarios_dir):
    from lab.backends.docker import DockerBackend
    repo, target, _ = image
    dead_run, live_run, next_run = (f"test-{w}-{uuid.uuid4().hex[:6]}" for w in ("dead", "live", "next"))
    code = CRASHING_LAB.format(repo=str(REPO), tag=target.name, run_id=dead_run,
                               sdir=str(scenarios_dir), repo_img=repo)
    proc = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert len(_run_containers(client, dead_run)) == 1       # the kill -9 left it behind

    live = DockerBackend(live_run, client=client, scenarios_dir=scenarios_dir, image_repo=repo,
                         check_import=None)                   # the next lab sweeps the orphan
    try:
        assert live.swept >= 1
        assert _run_containers(client, dead_run) == []
        assert live.run(target, ["echo"], timeout=30).returncode == 0
        nxt = DockerBackend(next_run, client=client, scenarios_dir=scenarios_dir,
                            image_repo=repo, check_import=None)
        try:                                                  # a live lab's container stays
            assert len(_run_containers(client, live_run)) == 1
        finally:
            nxt.close()
    finally:
        live.close()
    assert _run_containers(client, live_run) == []


INTERRUPTED_LAB = """
import sys
sys.path.insert(0, {repo!r})
from lab.backends.docker import DockerBackend
from lab.targets import Target
t = Target(name={tag!r}, kind="wheel", pyzmq="?", libzmq="?", draft=False, suite="bookworm", python="3.11")
b = DockerBackend({run_id!r}, scenarios_dir={sdir!r}, image_repo={repo_img!r}, check_import=None)
try:
    b.run(t, ["sleep"], timeout=60)
finally:
    b.close()
    b.close()
    print("closed", b.close_errors, flush=True)
"""


@pytest.mark.docker
def test_ctrl_c_during_a_cell_cleans_up_through_finally(client, image, scenarios_dir):
    repo, target, _ = image
    run_id = f"test-int-{uuid.uuid4().hex[:6]}"
    code = INTERRUPTED_LAB.format(repo=str(REPO), tag=target.name, run_id=run_id,
                                  sdir=str(scenarios_dir), repo_img=repo)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _run_containers(client, run_id):       # the cell's container is up
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1.0)                                   # the cell is sleeping inside
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"KeyboardInterrupt" in err
    assert out.decode().strip() == "closed []"
    assert _run_containers(client, run_id) == []


@pytest.mark.docker
def test_prepare_reasons(exec_backend, image):
    base = image[1]
    missing = Target(name="no-such-target-x", kind="wheel", pyzmq="0", libzmq="0", draft=False,
                     suite="bookworm", python="3.11")
    reason = exec_backend.prepare(missing)
    assert reason == (f"image {exec_backend.image_repo}:no-such-target-x is not built; "
                      "run `invoke images --targets no-such-target-x`")
    broken = Target(**{**base.__dict__, "broken": "needs a compiler from 1999"})
    assert "needs a compiler from 1999" in exec_backend.prepare(broken)


@pytest.mark.docker
def test_measure_overhead_reports_both_designs(client, image, scenarios_dir):
    from lab.bench import measure_overhead
    repo, target, _ = image
    m = measure_overhead(client, target, n=3, image_repo=repo, scenarios_dir=scenarios_dir)
    assert m["n"] == 3 and m["kept"] in ("exec", "container")
    assert m["exec_ms"] > 0 and m["container_per_run_ms"] > 0
    print(m)
    left = client.containers.list(all=True, ignore_removed=True, filters={"label": engine.LABEL_RUN})
    assert not [c for c in left if c.labels[engine.LABEL_RUN].startswith("bench")]


# ------------------------------------------------------------------ no engine needed

def test_unreachable_engine_is_one_line_lab_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    with pytest.raises(LabError) as info:
        engine.connect(timeout=2)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("no Docker engine answers at unix:///nonexistent: ")
    assert msg.endswith("; use --backend local to run in local processes")
    assert "No such file or directory" in msg
    ok, why = engine.available(timeout=1)
    assert not ok and why == "unix:///nonexistent: No such file or directory"


def test_backend_construction_without_engine_is_lab_error(monkeypatch, tmp_path):
    from lab.backends.docker import DockerBackend
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    with pytest.raises(LabError, match="^no Docker engine answers"):
        DockerBackend("x", scenarios_dir=tmp_path)


def test_transient_errors_are_only_connection_timeouts_and_5xx():
    import docker.errors
    import requests
    resp = lambda code: type("R", (), {"status_code": code, "reason": "", "url": ""})()  # noqa: E731
    assert engine.is_transient(requests.exceptions.ConnectionError("reset"))
    assert engine.is_transient(requests.exceptions.ReadTimeout("slow"))
    assert engine.is_transient(docker.errors.APIError("boom", response=resp(503)))
    assert not engine.is_transient(docker.errors.APIError("bad", response=resp(400)))
    assert not engine.is_transient(docker.errors.NotFound("gone", response=resp(404)))
    assert not engine.is_transient(docker.errors.APIError("conflict", response=resp(409)))
    assert not engine.is_transient(LabError("scenario failed"))
    assert not engine.is_transient(ValueError("x"))


def test_retry_is_bounded_and_skips_permanent_errors():
    import requests
    calls = []

    def flaky():
        calls.append(1)
        raise requests.exceptions.ConnectionError("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        engine.transient_retry(flaky)()
    assert len(calls) == 3
    calls.clear()

    def permanent():
        calls.append(1)
        raise ValueError("no")
    with pytest.raises(ValueError):
        engine.transient_retry(permanent)()
    assert len(calls) == 1


def test_owner_alive_judges_pid_host_and_pid_reuse():
    import socket
    me = engine.run_labels("r")
    assert engine.owner_alive(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not engine.owner_alive({**me, engine.LABEL_PID: str(child.pid), engine.LABEL_PIDSTART: ""})
    assert engine.owner_alive({**me, engine.LABEL_PID: str(child.pid),
                               engine.LABEL_HOST: socket.gethostname() + "-elsewhere"})
    if me[engine.LABEL_PIDSTART]:   # same pid, another start time: a reused pid
        assert not engine.owner_alive({**me, engine.LABEL_PIDSTART: str(int(me[engine.LABEL_PIDSTART]) + 1)})
    assert engine.owner_alive({**me, engine.LABEL_PID: "not-a-pid"})


# ------------------------------------------------------------------ infrastructure outcomes, judged

class ScriptedBackend:
    """Hands back the ProcessResults it is given, in order (what a backend saw happen)."""
    name = "scripted"

    def __init__(self, *results):
        self.results = list(results)
        self.calls = 0

    def run(self, target, argv, timeout, on_state=None):
        self.calls += 1
        return self.results.pop(0)


def _harness(outcome, cell, **kw):
    from factories import make_report
    return json.dumps(make_report(outcome, cell, **kw)) + "\n"


def _judge(*results, repeat=1):
    from factories import make_cell
    from lab.backends.base import ProcessResult  # noqa: F401 - the results' type
    from lab.requests import RunSettings
    from lab.runner import run_cell
    cell = make_cell(pattern="pushpull", transport="inproc", threads=2, msgs=10)
    target = next(t for t in load_targets() if t.name == cell.target)
    seen = []
    backend = ScriptedBackend(*[r(cell) if callable(r) else r for r in results])
    verdict = run_cell(backend, target, cell, RunSettings(repeat=repeat, stall=1.0),
                       on_run=lambda n, rep: seen.append((n, rep["outcome"])))
    return verdict, seen, backend


def test_a_run_lost_to_the_infrastructure_is_run_again_and_not_charged():
    from lab.backends.base import ProcessResult
    from lab.schemas import validate
    killed = ProcessResult("", "", 137, False, 0.8, container="zmqlab-r-x-1",
                           infra="container zmqlab-r-x-1 was killed from outside: exit 137, OOMKilled=false")
    verdict, seen, backend = _judge(killed, lambda c: ProcessResult(_harness("ok", c), "", 0, False, 0.6),
                                    lambda c: ProcessResult(_harness("ok", c), "", 0, False, 0.6), repeat=2)
    assert backend.calls == 3 and seen == [(1, "infra"), (1, "ok"), (2, "ok")]
    assert (verdict.worst, verdict.n, verdict.infra, verdict.failures) == ("ok", 2, 1, 0)
    run = verdict.runs[0].report
    validate("run", run)
    assert run["classified_by"] == "lab" and run["error"] is None and run["stall"] is None
    assert run["reason"] == ("container zmqlab-r-x-1 was killed from outside: exit 137, OOMKilled=false; "
                             "the run was made again in a fresh container")


def test_infra_is_retried_once_only():
    from lab.backends.base import ProcessResult
    gone = ProcessResult("", "", None, False, 0.2, infra="container c was removed from outside during the run")
    verdict, seen, backend = _judge(gone, gone, lambda c: ProcessResult(_harness("lost", c), "", 0, False, 1.0),
                                    repeat=2)
    assert backend.calls == 3 and seen == [(1, "infra"), (1, "infra"), (2, "lost")]
    assert (verdict.worst, verdict.n, verdict.infra, verdict.rate) == ("lost", 1, 2, 1.0)
    assert verdict.runs[1].reason == "container c was removed from outside during the run"


def test_a_pause_past_the_hard_timeout_is_infra_not_a_deadlock():
    from lab.backends.base import ProcessResult
    paused = ProcessResult("", "", None, False, 5.0, paused_s=4.2, container="c1",
                           infra="container c1 was paused by someone else for 4.2 s and still was at the "
                                 "hard timeout of 5 s; the lab removed it")
    verdict, _, _ = _judge(paused, paused)
    assert verdict.worst == "infra" and verdict.n == 0 and not verdict.failed
    rep = verdict.runs[0].report
    assert rep["outcome"] == "infra" and rep["stall"] is None
    assert rep["duration_s"] == pytest.approx(0.8) and rep["paused_s"] == 4.2
    assert "infra 2/2 runs, nothing judged: container c1 was paused by someone else for 4.2 s" in \
        verdict.summary_line()


def test_a_paused_run_keeps_an_ok_outcome_without_the_pause_but_not_a_failure():
    from lab.backends.base import ProcessResult
    from lab.schemas import validate
    ok = lambda c: ProcessResult(_harness("ok", c, duration_s=3.5), "", 0, False, 3.7,  # noqa: E731
                                 paused_s=3.0, container="c2")
    verdict, seen, _ = _judge(ok)
    rep = verdict.runs[0].report
    validate("run", rep)
    assert seen == [(1, "ok")] and rep["classified_by"] == "harness"
    assert rep["duration_s"] == pytest.approx(0.5) and rep["paused_s"] == 3.0
    assert rep["msgs_per_s"] == pytest.approx(20 / 0.5)
    assert rep["reason"].endswith("(container c2 was paused by someone else for 3.0 s during the run: "
                                  "left out of its duration)")
    # told when: only the part of the pause inside the run's own measured time comes out
    early = lambda c: ProcessResult(_harness("ok", c, duration_s=1.5), "", 0, False, 3.0,  # noqa: E731
                                    paused_s=2.0, pauses=((0.2, 2.2),), container="c2")
    rep = _judge(early)[0].runs[0].report
    assert rep["duration_s"] == pytest.approx(1.5 - 0.7) and rep["paused_s"] == 2.0
    dead = lambda c: ProcessResult(_harness("deadlock", c), "", 0, False, 6.0,  # noqa: E731
                                   paused_s=2.5, container="c3")
    verdict, seen, backend = _judge(dead, lambda c: ProcessResult(_harness("ok", c), "", 0, False, 0.6))
    assert seen == [(1, "infra"), (1, "ok")] and verdict.worst == "ok" and verdict.infra == 1
    rep = verdict.runs[0].report
    validate("run", rep)
    assert rep["reason"].startswith("container c3 was paused by someone else for 2.5 s during the run, so its "
                                    "outcome cannot be trusted (the run's own report said deadlock: ")
    assert rep["threads"] and rep["stall"]                    # its own evidence is kept


# ------------------------------------------------------------------ infrastructure, for real

def _cell_container(client, run_id, timeout=30.0):
    """The container of `run_id` in which a scenario process is running now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in _run_containers(client, run_id):
            try:
                if c.status == "running" and any("scenarios" in " ".join(p)
                                                 for p in c.top(ps_args="-eo pid,args")["Processes"]):
                    return c
            except Exception:                       # noqa: BLE001 - it may just have gone
                pass
        time.sleep(0.1)
    raise AssertionError(f"no running cell of {run_id}")


def _outside(client, run_id, *commands, wait=1.0):
    """In the background, as someone else would: `docker <command> <the cell's container>`
    once a cell runs in it, `wait` s later; returns the thread and what it did."""
    import threading
    done = []

    def act():
        name = _cell_container(client, run_id).name
        time.sleep(wait)
        for cmd in commands:
            if isinstance(cmd, (int, float)):
                time.sleep(cmd)
                continue
            subprocess.run(["docker", cmd, name], check=True, capture_output=True, timeout=60)
            done.append((cmd, name, time.monotonic()))
    t = threading.Thread(target=act, daemon=True)
    t.start()
    return t, done


@pytest.fixture(params=["exec", "container"])
def real_backend(request, client, built_images):
    from lab.backends.docker import DockerBackend
    run_id = f"test-infra-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=client, mode=request.param)
    yield b
    b.close()
    assert _run_containers(client, run_id) == []


def _cell(built_images, **kw):
    from lab.cells import Cell
    target = built_images["pyzmq-25.1.2"]
    return target, Cell(target.name, "pushpull", "inproc", threads=2, msgs=20, **kw)


@pytest.mark.docker
def test_docker_kill_of_a_running_cells_container_is_infra_and_the_run_is_made_again(real_backend, client,
                                                                                     built_images):
    from lab.requests import RunSettings
    from lab.runner import run_cell
    target, cell = _cell(built_images)
    assert real_backend.prepare(target) is None
    killer, done = _outside(client, real_backend.run_id, "kill")
    verdict = run_cell(real_backend, target, cell, RunSettings(repeat=1, stall=1.0, sleep=3.0))
    killer.join(30)
    print(f"\n[{real_backend.mode}] {done[0][0]} {done[0][1]}\n  " + verdict.summary_line())
    assert [r.outcome for r in verdict.runs] == ["infra", "ok"], verdict.summary_line()
    assert (verdict.worst, verdict.n, verdict.infra, verdict.failures) == ("ok", 1, 1, 0)
    first = verdict.runs[0].report
    assert first["reason"].startswith(f"container {done[0][1]} was killed from outside: exit 137, "
                                      "OOMKilled=false"), first["reason"]
    assert first["reason"].endswith("; the run was made again in a fresh container")


@pytest.mark.docker
def test_docker_pause_past_the_hard_timeout_is_infra_never_a_deadlock(real_backend, client, built_images):
    import docker.errors

    from lab.requests import RunSettings
    from lab.runner import run_cell
    target, cell = _cell(built_images)
    assert real_backend.prepare(target) is None
    settings = RunSettings(repeat=1, stall=1.0, sleep=2.0, timeout=5.0)
    pauser, done = _outside(client, real_backend.run_id, "pause", wait=0.5)   # and never unpaused
    t0 = time.monotonic()
    verdict = run_cell(real_backend, target, cell, settings)
    pauser.join(30)
    print(f"\n[{real_backend.mode}] {done[0][0]} {done[0][1]} (never unpaused), --timeout 5\n  "
          + verdict.summary_line())
    assert [r.outcome for r in verdict.runs] == ["infra", "ok"], verdict.summary_line()
    assert verdict.worst == "ok" and not verdict.failed and verdict.counts["deadlock"] == 0
    first = verdict.runs[0].report
    assert first["reason"].startswith(f"container {done[0][1]} was paused by someone else for "), first["reason"]
    assert "and still was at the hard timeout of 5 s; the lab removed it" in first["reason"]
    assert 3.0 <= first["paused_s"] <= 5.5 and first["duration_s"] <= 5.5 - first["paused_s"] + 1.0
    assert time.monotonic() - t0 < 5 + 2 + 15                 # timeout, removal, a fresh run
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(done[0][1])


@pytest.mark.docker
def test_a_short_pause_during_a_run_is_taken_out_of_its_duration_or_makes_it_infra(exec_backend_real,
                                                                                   client, built_images):
    """Paused 2.5 s and unpaused, with a 1 s stall window: the harness's own watchdog may see
    that as a stall. Never a deadlock: an ok run keeps its outcome without the pause; anything
    else is infra and is made again."""
    from lab.requests import RunSettings
    from lab.runner import run_cell
    target, cell = _cell(built_images)
    assert exec_backend_real.prepare(target) is None
    pauser, done = _outside(client, exec_backend_real.run_id, "pause", 2.5, "unpause", wait=0.3)
    verdict = run_cell(exec_backend_real, target, cell, RunSettings(repeat=1, stall=1.0, sleep=1.0))
    pauser.join(30)
    first = verdict.runs[0].report
    print(f"\n[exec] pause 2.5 s, unpause {done[0][1]}\n  " + verdict.summary_line()
          + f"\n  run 1: {first['outcome']}, duration_s {first['duration_s']}, paused_s {first['paused_s']}: "
          + first["reason"])
    assert first["outcome"] in ("ok", "infra") and verdict.counts["deadlock"] == 0, verdict.summary_line()
    assert 2.0 <= first["paused_s"] <= 3.5
    assert "was paused by someone else for" in first["reason"]
    if first["outcome"] == "ok":         # (its --sleep ran on the clock while it was frozen)
        assert 0 < first["duration_s"] < 2.0
    else:
        assert [r.outcome for r in verdict.runs] == ["infra", "ok"]


@pytest.fixture
def exec_backend_real(client, built_images):
    from lab.backends.docker import DockerBackend
    run_id = f"test-infra-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=client)
    yield b
    b.close()
    assert _run_containers(client, run_id) == []


SANDBOX_FIELDS = ("User", "CapDrop", "ReadonlyRootfs", "PidsLimit", "Memory", "SecurityOpt", "NetworkMode",
                  "Tmpfs", "Labels")


def _sandbox_facts(attrs):
    cfg, host = attrs["Config"], attrs["HostConfig"]
    run_labels = (engine.LABEL, engine.LABEL_RUN, engine.LABEL_PID, engine.LABEL_PIDSTART, engine.LABEL_HOST)
    labels = {k: v for k, v in (cfg.get("Labels") or {}).items() if k in run_labels}
    return {"User": cfg["User"], "CapDrop": host["CapDrop"], "ReadonlyRootfs": host["ReadonlyRootfs"],
            "PidsLimit": host["PidsLimit"], "Memory": host["Memory"], "SecurityOpt": host["SecurityOpt"],
            "NetworkMode": host["NetworkMode"], "Tmpfs": host["Tmpfs"], "Labels": sorted(labels)}


@pytest.mark.docker
def test_verification_and_cell_containers_get_the_same_sandbox_and_labels(client, built_images,
                                                                          exec_backend_real):
    from lab import images
    target = built_images["pyzmq-25.1.2"]
    seen = {}

    class Inspecting:                        # the real client; inspects the container it made
        def __init__(self, real):
            self.real = real

        def create(self, *args, **kwargs):
            container = self.real.containers.create(*args, **kwargs)
            start = container.start

            def start_and_inspect():
                start()
                seen["verify"] = client.api.inspect_container(container.id)
            container.start = start_and_inspect
            return container

    proxy = type("Client", (), {"containers": Inspecting(client)})()
    run_id = f"test-verify-{uuid.uuid4().hex[:6]}"
    assert images.verify_image(proxy, target, run_id=run_id) == images.expected_verify_line(target)
    assert exec_backend_real.prepare(target) is None
    cell = _run_containers(client, exec_backend_real.run_id)[0]
    seen["cell"] = client.api.inspect_container(cell.id)
    verify, cells = _sandbox_facts(seen["verify"]), _sandbox_facts(seen["cell"])
    print("\n" + "\n".join(f"  {k:<15} verify {verify[k]!r:<60} cell {cells[k]!r}" for k in SANDBOX_FIELDS))
    assert verify == cells
    assert verify["User"] == "65534:65534" and verify["CapDrop"] == ["ALL"] and verify["ReadonlyRootfs"]
    assert verify["PidsLimit"] == 512 and verify["Memory"] == 512 * 1024 * 1024
    assert verify["Labels"] == sorted([engine.LABEL, engine.LABEL_RUN, engine.LABEL_PID,
                                       engine.LABEL_PIDSTART, engine.LABEL_HOST])
    assert seen["verify"]["Config"]["Labels"][engine.LABEL_RUN] == run_id
    assert _run_containers(client, run_id) == []               # removed after the check


@pytest.mark.docker
def test_cleanup_problems_are_reported_once_in_one_line(client, image, scenarios_dir):
    from lab.backends.docker import DockerBackend
    repo, target, _ = image
    lines = []
    b = DockerBackend(f"test-{uuid.uuid4().hex[:8]}", client=client, scenarios_dir=scenarios_dir,
                      image_repo=repo, check_import=None, report=lines.append)
    assert b.run(target, ["echo"], timeout=30).returncode == 0
    b.close()
    assert lines == []                                         # nothing went wrong: nothing said
    b.close_errors += ["zmqlab-x: device or resource busy", "zmqlab-y: timed out"]
    b.close()
    b.close()
    assert lines == [f"zmqlab: cleaning up Docker run {b.run_id} met 2 problem(s): zmqlab-x: device or "
                     f"resource busy (+1 more); see `docker ps -a --filter label=org.zmqlab.run={b.run_id}`"]
