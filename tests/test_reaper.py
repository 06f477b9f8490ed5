"""A lab killed with SIGKILL cannot clean up: its reaper removes the run's containers from the
engine within seconds, and a lab that ends normally leaves no reaper behind."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import docker_unavailable

REPO = Path(__file__).resolve().parents[1]
# A lab in miniature: a Docker backend whose target container is up, then it waits to be killed.
LAB = textwrap.dedent("""
    import sys, time
    from lab.backends.docker import DockerBackend
    from lab.targets import load_targets, select
    target = select(load_targets(), "pyzmq-25.1.2")[0]
    backend = DockerBackend(sys.argv[1])
    assert backend.prepare(target) is None
    backend.run(target, ["--pattern", "pushpull", "--threads", "1", "--msgs", "5", "--sleep", "0"], 60)
    print("up", flush=True)
    if sys.argv[2] == "close":
        backend.close()
        print("closed", flush=True)
    else:
        time.sleep(600)
""")


def ours(client, run_id):
    return client.containers.list(all=True, filters={"label": f"org.zmqlab.run={run_id}"})


def start_lab(run_id, how):
    proc = subprocess.Popen([sys.executable, "-c", LAB, run_id, how], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "up"
    return proc


def reapers(run_id):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lab.reaper" in argv and run_id.encode() in argv:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_of_the_lab_leaves_no_container_after_a_few_seconds(built_images):
    from lab import engine
    try:
        client = engine.connect()
    except Exception as exc:
        docker_unavailable(str(exc))
    run_id = "reaper-test-%d" % os.getpid()
    proc = start_lab(run_id, "wait")
    assert ours(client, run_id), "the lab's container is not up"
    assert reapers(run_id), "no reaper watches the lab"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while ours(client, run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours(client, run_id) == []
    time.sleep(1)
    assert reapers(run_id) == []                         # the reaper ends once it cleaned up


@pytest.mark.docker
@pytest.mark.slow
def test_a_lab_that_closes_stops_its_reaper(built_images):
    run_id = "reaper-close-%d" % os.getpid()
    proc = start_lab(run_id, "close")
    assert proc.stdout.readline().strip() == "closed"
    proc.wait(timeout=30)
    assert reapers(run_id) == []
