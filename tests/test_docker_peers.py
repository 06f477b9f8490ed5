"""The Docker side of the containers topology (lab/backends/peers.py): one run as a receiver
container and a sender container on the run's own internal network. Real containers, no mocks;
the plumbing is exercised with stdlib python in the target images, the real scenario program
by run_peers(). Only loopback and the lab's own containers are ever contacted."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from lab import engine
from lab.engine import PYTHON
from lab.errors import LabError

REPO = Path(__file__).resolve().parents[1]
PIN = "pyzmq-25.1.2"
OTHER_PIN = "pyzmq-26.4.0"
CELL = ["--pattern", "pushpull", "--transport", "tcp", "--threads", "2", "--msgs", "50",
        "--topology", "containers", "--sleep", "0", "--stall", "2", "--quiet"]

# A tcp listener (rx) and a client that reaches it by the rx container's name (tx), retrying
# until the listener is up: the two execs start together, nothing orders them.
LISTEN = """
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); print("got", c.recv(64).decode(), flush=True)
"""
DIAL = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.02)
c.sendall(socket.gethostname().encode()); print("sent", flush=True)
"""
SLEEP = [PYTHON, "-c", "import time; print('asleep', flush=True); time.sleep(120)"]


def leftovers(client, run_id):
    flt = {"label": f"{engine.LABEL_RUN}={run_id}"}
    return (client.containers.list(all=True, ignore_removed=True, filters=flt),
            client.networks.list(filters=flt))


@pytest.fixture
def backend(engine_client, built_images):
    from lab.backends.docker import DockerBackend
    run_id = f"test-peers-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=engine_client)
    yield b
    b.close()
    assert leftovers(engine_client, run_id) == ([], [])
    assert b.close_errors == []


def pair(b, target, sender=None):
    return b._long_lived(target, "rx"), b._long_lived(sender or target, "tx")


def talk(b, rx, tx, timeout=30):
    port = b._next_port()
    got_rx, got_tx, _ = b._exec_pair(rx, tx, [PYTHON, "-c", LISTEN, str(port)],
                                     [PYTHON, "-c", DIAL, rx.name, str(port)], timeout)
    return got_rx, got_tx


def host_has_ipv4(ifname: str) -> bool | None:
    """Does this host's interface carry an IPv4 address (SIOCGIFADDR)? None: no such
    interface here (a remote or rootless engine). Asks the kernel; sends nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname.encode()[:15]))
        return True
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return False
        if exc.errno == errno.ENODEV:
            return None
        raise
    finally:
        s.close()


# ------------------------------------------------------------------ no engine needed

def test_the_roles_and_addresses_come_after_the_cells_flags():
    from lab.backends.peers import peer_commands
    rx, tx = peer_commands(["--pattern", "pushpull", "--threads", 2], "zmqlab-r-pyzmq-25.1.2-rx-abc", 20004)
    assert rx == [PYTHON, "-m", "scenarios", "--pattern", "pushpull", "--threads", "2",
                  "--role", "receiver", "--bind", "tcp://0.0.0.0:20004", "--report-bind", "tcp://0.0.0.0:20005"]
    assert tx == [PYTHON, "-m", "scenarios", "--pattern", "pushpull", "--threads", "2",
                  "--role", "sender", "--connect", "tcp://zmqlab-r-pyzmq-25.1.2-rx-abc:20004",
                  "--report", "tcp://zmqlab-r-pyzmq-25.1.2-rx-abc:20005"]


def test_in_the_pub_binds_layout_the_sender_binds_a_port_per_socket_and_the_receiver_connects_to_them():
    from lab.backends.peers import Peers, peer_commands, sender_sockets
    argv = ["--pattern", "pubsub", "--threads", 4, "--variant", "pub-binds"]
    assert sender_sockets(argv) == 5 and sender_sockets(["--pattern", "pushpull", "--threads", "4"]) == 0
    rx, tx = peer_commands(argv, "rx-host", 20004, "tx-host", 31000)
    assert rx[-2:] == ["--sender-at", "tcp://tx-host:31000"] and tx[-2:] == ["--sender-bind", "tcp://0.0.0.0:31000"]
    p = Peers()
    p._init_peers()
    blocks = [p._sender_ports(5) for _ in range(3)]
    assert blocks == [20000, 20005, 20010]              # runs alive together never share a port
    p._sender_cursor = 59998
    assert p._sender_ports(5) == 20000                  # wraps before passing 60000


def test_ports_two_per_run_never_shared_and_wrapping_below_60000():
    from lab.backends.peers import Peers
    p = Peers()
    p._init_peers()
    first = [p._next_port() for _ in range(3)]
    assert first == [20000, 20002, 20004]
    ports = [p._next_port() for _ in range(20000 - 3)]
    assert max(ports) == 59998 and len(set(first + ports)) == 20000      # P + 1 <= 59999
    assert p._next_port() == 20000                                       # wrapped
    q = Peers()
    q._init_peers()                                      # concurrent callers: all distinct
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.extend(q._next_port() for _ in range(500)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 4000


def test_the_receivers_report_records_both_images_and_still_validates():
    from factories import make_report

    from lab import schemas
    from lab.backends.base import ProcessResult
    from lab.backends.docker import with_provenance
    rx_img = {"ref": "zmqlab-target:pyzmq-26.4.0", "id": "sha256:" + "26" * 32,
              "base": {"ref": "zmqlab-base:bookworm", "digest": "sha256:" + "11" * 32, "source": "bootstrap"}}
    tx_img = {"ref": "zmqlab-target:pyzmq-25.1.2", "id": "sha256:" + "25" * 32}
    res = ProcessResult('{"ready": {}}\n' + json.dumps(make_report("ok")) + "\n", "", 0, False, 1.0)
    out = json.loads(with_provenance(res, rx_img, tx_img).stdout.splitlines()[-1])
    assert out["image"] == rx_img and out["sender_image"] == tx_img
    schemas.validate("run", out)
    with pytest.raises(LabError, match="sender_image"):
        schemas.validate("run", {**out, "sender_image": {"ref": "x"}})   # same shape as "image"
    assert "sender_image" not in json.loads(with_provenance(res, rx_img).stdout.splitlines()[-1])


def test_local_processes_cannot_run_the_containers_topology(tmp_path):
    from lab.backends.local import LocalBackend
    from lab.targets import load_targets
    target = next(t for t in load_targets() if t.name == PIN)
    with pytest.raises(LabError, match="^the containers topology needs a Docker engine; "
                                       "local processes can run --topology processes$"):
        LocalBackend(progress=lambda line: None).run_peers(target, target, CELL, 10)


# ------------------------------------------------------------------ the plumbing, real containers

@pytest.mark.docker
def test_two_containers_talk_by_name_on_the_runs_internal_network_and_nothing_else(backend, built_images,
                                                                                 engine_client):
    target = built_images[PIN]
    assert backend.prepare(target) is None              # its network-less cell container
    rx, tx = pair(backend, target)                      # one target: still two containers
    assert rx.id != tx.id
    got_rx, got_tx = talk(backend, rx, tx)
    assert (got_rx.returncode, got_tx.returncode) == (0, 0), (got_rx, got_tx)
    assert got_tx.stdout == "sent\n" and got_rx.stdout == f"got {tx.id[:12]}\n"   # tx's hostname
    assert (got_rx.container, got_tx.container) == (rx.name, tx.name)

    name = f"zmqlab-{backend.run_id}-net"
    net = engine_client.api.inspect_network(name)
    print("\n", json.dumps({k: net[k] for k in ("Name", "Driver", "Internal", "Options", "Labels")}))
    assert net["Internal"] is True and net["Driver"] == "bridge"
    assert net["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
    assert net["Labels"] == backend.labels                             # the run's labels, all of them
    assert sorted(net["Containers"]) == sorted([rx.id, tx.id])         # not the cell container
    cell = backend._containers[target.name]
    views = {c: engine_client.api.inspect_container(c.id) for c in (rx, tx, cell)}
    for peer in (rx, tx):
        attrs = views[peer]
        assert list(attrs["NetworkSettings"]["Networks"]) == [name]     # no other network
        assert attrs["HostConfig"]["NetworkMode"] == name
        assert not attrs["HostConfig"]["PortBindings"] and not attrs["NetworkSettings"]["Ports"]
        # the same sandbox as a cell's container, but for the network
        box = {k: v for k, v in attrs["HostConfig"].items() if k != "NetworkMode"}
        assert box == {k: v for k, v in views[cell]["HostConfig"].items() if k != "NetworkMode"}
        for key in ("User", "Env", "Labels", "Entrypoint", "WorkingDir"):
            assert attrs["Config"][key] == views[cell]["Config"][key], key
    assert views[cell]["HostConfig"]["NetworkMode"] == "none"
    # the host has no address on the network's bridge: not even the host is a peer
    bridge = net["Options"].get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]
    assert host_has_ipv4(bridge) in (False, None)


@pytest.mark.docker
def test_a_pair_that_outlives_the_hard_timeout_is_killed_by_token_and_the_containers_stay(backend,
                                                                                         built_images):
    target = built_images[PIN]
    rx, tx = pair(backend, target)
    t0 = time.monotonic()
    got_rx, got_tx, _ = backend._exec_pair(rx, tx, SLEEP, [PYTHON, "-c", "print('done')"], 2)
    elapsed = time.monotonic() - t0
    assert got_rx.timed_out and got_rx.returncode is None and got_rx.stdout == "asleep\n", got_rx
    assert not got_tx.timed_out and got_tx.returncode == 0 and got_tx.stdout == "done\n"
    assert 2 <= elapsed < 2 + 1, elapsed
    got_rx, got_tx, _ = backend._exec_pair(rx, tx, SLEEP, SLEEP, 1.5)      # both run out
    assert got_rx.timed_out and got_tx.timed_out, (got_rx, got_tx)
    for c in (rx, tx):                                  # killed inside: no sleeper left
        procs = [" ".join(p[-1:]) for p in c.top(ps_args="-eo pid,args")["Processes"]]
        assert not [p for p in procs if "sleep(120)" in p], procs
    assert pair(backend, target) == (rx, tx)            # same containers serve the next run
    assert [r.returncode for r in talk(backend, rx, tx)] == [0, 0]


@pytest.mark.docker
def test_concurrent_pairs_share_the_containers_on_their_own_ports(backend, built_images):
    from concurrent.futures import ThreadPoolExecutor
    target = built_images[PIN]
    rx, tx = pair(backend, target)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: talk(backend, rx, tx), range(6)))
    assert all([r.returncode for r in res] == [0, 0] for res in results), results
    assert len(backend._peer_containers) == 2


@pytest.mark.docker
def test_a_peer_container_killed_from_outside_is_infra_and_the_next_run_gets_a_fresh_one(backend,
                                                                                        built_images,
                                                                                        engine_client):
    target = built_images[PIN]
    rx, tx = pair(backend, target)

    def kill_rx():
        time.sleep(1.0)
        subprocess.run(["docker", "kill", rx.name], check=True, capture_output=True, timeout=60)
    killer = threading.Thread(target=kill_rx)
    killer.start()
    got_rx, got_tx, _ = backend._exec_pair(rx, tx, SLEEP, [PYTHON, "-c", "import time; time.sleep(3)"], 20)
    killer.join()
    assert got_rx.infra and got_rx.infra.startswith(f"container {rx.name} was killed from outside: exit 137"), got_rx
    assert got_tx.infra is None and got_tx.returncode == 0, got_tx      # its own container was fine
    new_rx, same_tx = pair(backend, target)
    assert new_rx.id != rx.id and same_tx.id == tx.id
    assert [r.returncode for r in talk(backend, new_rx, same_tx)] == [0, 0]


@pytest.mark.docker
def test_release_removes_a_targets_containers_and_close_the_network(engine_client, built_images):
    from lab.backends.docker import DockerBackend
    target = built_images[PIN]
    run_id = f"test-peers-{uuid.uuid4().hex[:8]}"
    b = DockerBackend(run_id, client=engine_client)
    try:
        assert b.prepare(target) is None
        talk(b, *pair(b, target))
        containers, networks = leftovers(engine_client, run_id)
        assert len(containers) == 3 and [n.name for n in networks] == [f"zmqlab-{run_id}-net"]
        b.release(target)
        assert leftovers(engine_client, run_id)[0] == []
        assert len(leftovers(engine_client, run_id)[1]) == 1       # the run's: until close()
        assert [r.returncode for r in talk(b, *pair(b, target))] == [0, 0]   # fresh ones, same network
    finally:
        b.close()
    assert leftovers(engine_client, run_id) == ([], [])
    assert b.close_errors == []


# ------------------------------------------------------------------ the scenario program, for real

def report_of(res):
    return json.loads(res.receiver.stdout.strip().splitlines()[-1])


@pytest.mark.docker
@pytest.mark.parametrize("receiver,sender", [(PIN, PIN), (OTHER_PIN, PIN)], ids=["same-pin", "mixed-pins"])
def test_run_peers_runs_the_scenario_as_receiver_and_sender_containers(backend, built_images, receiver, sender):
    from lab import schemas
    rx_t, tx_t = built_images[receiver], built_images[sender]
    assert backend.prepare(rx_t) is None and backend.prepare(tx_t) is None
    res = backend.run_peers(rx_t, tx_t, CELL, 60)
    assert res.network == f"zmqlab-{backend.run_id}-net"
    assert res.receiver.container.startswith(f"zmqlab-{backend.run_id}-{receiver}-rx-")
    assert res.sender.container.startswith(f"zmqlab-{backend.run_id}-{sender}-tx-")
    assert (res.receiver.returncode, res.sender.returncode) == (0, 0), res
    assert not (res.receiver.infra or res.sender.infra or res.receiver.timed_out or res.sender.timed_out)
    report = report_of(res)
    print(f"\n[{receiver} <- {sender}] {report['outcome']}: {report['reason']} "
          f"(receiver {res.receiver.wall_s:.2f} s, sender {res.sender.wall_s:.2f} s)")
    assert report["outcome"] == "ok", report["reason"]
    assert report["params"]["transport"] == "tcp" and report["topology"] == "containers"
    assert report["versions"]["pyzmq"] == rx_t.pyzmq
    peer, = report["peers"]
    assert peer["versions"]["pyzmq"] == tx_t.pyzmq and peer["account"] == "final"
    assert report["image"]["ref"] == f"zmqlab-target:{receiver}"
    assert report["sender_image"]["ref"] == f"zmqlab-target:{sender}"
    schemas.validate("run", report)
    sender_doc = json.loads(res.sender.stdout.strip().splitlines()[-1])
    assert sender_doc["schema"] == "zmqlab.sender/1"
    # the sender found the receiver by its container's name on the run's network
    dialled = {e["endpoint"].rsplit(":", 1)[0] for e in report["timeline"]["events"] if e["side"] == "sender"}
    assert dialled == {f"tcp://{res.receiver.container}"}, dialled


@pytest.mark.docker
def test_a_receiver_container_removed_behind_the_labs_back_is_replaced_with_the_address(backend, built_images):
    target = built_images[PIN]
    assert backend.prepare(target) is None
    first = backend.run_peers(target, target, CELL, 60)
    assert report_of(first)["outcome"] == "ok"
    backend._peer_containers[(target.name, "rx")].remove(force=True)
    again = backend.run_peers(target, target, CELL, 60)
    assert again.receiver.container != first.receiver.container
    assert report_of(again)["outcome"] == "ok", report_of(again)["reason"]


# ------------------------------------------------------------------ a lab killed mid-run

KILLED_LAB = textwrap.dedent("""
    import sys
    from lab.backends.docker import DockerBackend
    from lab.engine import PYTHON
    from lab.targets import load_targets
    target = next(t for t in load_targets() if t.name == sys.argv[2])
    b = DockerBackend(sys.argv[1])
    rx, tx = b._long_lived(target, "rx"), b._long_lived(target, "tx")
    print("up", flush=True)
    sleep = [PYTHON, "-c", "import time; time.sleep(120)"]
    b._exec_pair(rx, tx, sleep, sleep, 120)
""")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("cleaner", ["reaper", "sweep"])
def test_a_sigkilled_lab_leaves_no_peer_container_and_no_network(cleaner, engine_client, built_images):
    """The lab dies mid-run (kill -9): its reaper removes the peers and then the network; with
    the reaper gone too, the next lab's orphan sweep does."""
    from lab.backends.docker import DockerBackend
    from tests.test_reaper import reapers
    run_id = f"test-peers-kill-{uuid.uuid4().hex[:6]}"
    lab = subprocess.Popen([sys.executable, "-c", KILLED_LAB, run_id, PIN], cwd=REPO, stdout=subprocess.PIPE,
                           text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert lab.stdout.readline().strip() == "up"
        deadline = time.monotonic() + 30
        while True:                                     # both sleepers run in their containers
            containers, networks = leftovers(engine_client, run_id)
            running = [c for c in containers
                       if any("sleep(120)" in p[-1] for p in c.top(ps_args="-eo pid,args")["Processes"])]
            if len(running) == 2:
                break
            assert time.monotonic() < deadline, "the pair never ran"
            time.sleep(0.1)
        assert len(networks) == 1
        if cleaner == "sweep":                          # no reaper: only a lab's sweep can clean up
            watchers = reapers(run_id)
            assert watchers, "no reaper watches the lab"
            for pid in watchers:
                os.kill(pid, signal.SIGKILL)
        lab.send_signal(signal.SIGKILL)
        lab.wait(timeout=10)
        if cleaner == "sweep":
            # (any other lab starting on this engine meanwhile sweeps them as well: the same code)
            nxt = DockerBackend(f"test-peers-next-{uuid.uuid4().hex[:6]}", client=engine_client)
            nxt.close()
            assert nxt.close_errors == [], nxt.close_errors
        deadline = time.monotonic() + 15
        while leftovers(engine_client, run_id) != ([], []) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leftovers(engine_client, run_id) == ([], [])
        time.sleep(1)
        assert reapers(run_id) == []
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        engine.remove_run(engine_client, run_id)        # whatever a failed assertion left


# ------------------------------------------------------------------ timing

@pytest.mark.docker
def test_run_peers_on_a_warm_backend(backend, built_images):
    target = built_images[PIN]
    assert backend.prepare(target) is None
    backend.run_peers(target, target, CELL, 60)         # the peers' containers and the network
    walls, outcomes, sender_extra = [], [], []
    for _ in range(10):
        t0 = time.monotonic()
        res = backend.run_peers(target, target, CELL, 60)
        walls.append(time.monotonic() - t0)
        outcomes.append(report_of(res)["outcome"])
        sender_extra.append(res.sender.wall_s - res.receiver.wall_s)
    print(f"\n10 run_peers (pushpull tcp 2x50): min {min(walls) * 1000:.0f} ms, median "
          f"{statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms; the sender outlived "
          f"the receiver by > 1 s in {sum(x > 1 for x in sender_extra)}/10")
    assert outcomes == ["ok"] * 10


@pytest.mark.docker
def test_a_pair_on_warm_containers_costs_two_execs_not_two_container_starts(backend, built_images):
    target = built_images[PIN]
    rx, tx = pair(backend, target)
    talk(backend, rx, tx)                               # warm
    walls = []
    for _ in range(10):
        t0 = time.monotonic()
        assert [r.returncode for r in talk(backend, rx, tx)] == [0, 0]
        walls.append(time.monotonic() - t0)
    print(f"\n10 pairs (listener + client): min {min(walls) * 1000:.0f} ms, "
          f"median {statistics.median(walls) * 1000:.0f} ms")
    assert statistics.median(walls) < 1.0
