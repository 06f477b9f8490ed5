"""The fault injector with real containers (lab/backends/faults.py, docs/faults.md): two small
containers of the lab's base image on an internal, labelled network made for the test, a tiny
python tcp server in one ("srv") and a client exec'd in the other ("cli"). Each fault is shown
to do what it says and to be undone; the host's iptables never change; nothing is left behind.
Traffic only between the test's own containers (and their loopback)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from lab import engine
from lab.faults import parse

REPO = Path(__file__).resolve().parents[1]
PORT = 7000
SERVER = textwrap.dedent(f"""
    import socket, threading
    def serve(c):
        with c:
            mode = c.recv(1)
            if mode == b"p":                                  # ping: one byte back
                c.sendall(b"p")
            elif mode == b"u":                                # upload: count bytes until EOF
                n = 0
                while True:
                    b = c.recv(1 << 16)
                    if not b:
                        break
                    n += len(b)
                c.sendall(str(n).encode())
            elif mode == b"d":                                # download: send N zero bytes
                n = int(c.recv(12))
                block = bytes(1 << 16)
                while n > 0:
                    c.sendall(block[:n]); n -= min(n, len(block))
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", {PORT})); s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")
CLIENT = textwrap.dedent("""
    import errno, json, socket, sys, time
    mode, host, port, timeout, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    t0, res = time.monotonic(), {}
    try:
        s = socket.create_connection((host, port), timeout=timeout)
        if mode == "ping":
            s.sendall(b"p"); res["ok"] = s.recv(1) == b"p"
        elif mode == "up":
            s.sendall(b"u" + bytes(n)); s.shutdown(socket.SHUT_WR); res["ok"] = int(s.recv(64)) == n
        else:
            s.sendall(b"d" + b"%012d" % n); got = 0
            while got < n:
                b = s.recv(1 << 16)
                if not b:
                    break
                got += len(b)
            res["ok"] = got == n
    except OSError as e:
        res = {"ok": False, "error": errno.errorcode.get(e.errno, "") if e.errno else type(e).__name__}
    res["seconds"] = time.monotonic() - t0
    res["rate"] = n / res["seconds"]
    print(json.dumps(res))
""")


# ------------------------------------------------------------------ no engine needed

def test_kill_is_not_the_injectors_and_is_refused_before_anything_happens():
    from lab.backends.faults import FaultInjector
    with pytest.raises(ValueError, match="kill is not the injector's"):
        FaultInjector(None, {}, "no-run").start(parse("kill:sender@after200+1"), None)


def test_the_steps_touch_only_the_lab_interface_never_loopback():
    from lab.backends.faults import IFB, apply_script, heal_script, steps
    for spec in ("partition:rx@1+2", "reset:tx@1+2", "bandwidth:rx@1+3=1mbit", "delay:rx@1+1=50ms", "loss:tx@1+1=5%"):
        todo = steps(parse(spec), "eth0")
        text = apply_script(todo) + heal_script(todo)
        assert " lo " not in text and "-i lo" not in text and "eth0" in text, spec
        devs = set(re.findall(r"(?:dev|-i|-o) ([a-z0-9-]+)", text))
        assert devs <= {"eth0", IFB}, (spec, devs)
    assert [s.apply for s in steps(parse("partition:rx@1+2"), "eth0")][:2] == [
        "iptables -I INPUT 1 -i eth0 -j DROP", "iptables -I OUTPUT 1 -o eth0 -j DROP"]
    assert steps(parse("bandwidth:rx@1+3=8mbit"), "eth0")[0].apply == \
        "tc qdisc add dev eth0 root tbf rate 8mbit burst 20000 latency 200ms"
    with pytest.raises(ValueError):
        steps(parse("pause:rx@1+2"), "eth0")


# ------------------------------------------------------------------ the test's own lab pair

@contextlib.contextmanager
def lab_pair(client, tag: str):
    """srv (the tcp server) and cli (idle) on a fresh internal network, all labelled with a run
    of the test's own; an injector for that run. Afterwards: undo_all, remove the run, and
    check that no container (sidecars included) or network of it is left."""
    from lab import sidecar
    from lab.backends.faults import FaultInjector
    from lab.backends.peers import create_network, network_name
    from lab.base_image import base_ref
    run_id = f"test-faults-{tag}-{uuid.uuid4().hex[:8]}"
    labels = engine.run_labels(run_id)
    injector = FaultInjector(client, labels, run_id, progress=lambda line: print(line, flush=True))
    try:
        sidecar.ensure_image(client, progress=lambda line: print(line, flush=True))
        net = create_network(client, network_name(run_id), labels)
        peers = {}
        for role, cmd in (("srv", ["python3", "-c", SERVER]), ("cli", ["sleep", "900"])):
            peers[role] = client.containers.run(base_ref(sidecar.SUITE), cmd, name=f"zmqlab-{run_id}-{role}",
                                                labels=labels, detach=True, **engine.sandbox(network=net))
        wait_for_server(peers["cli"], peers["srv"])
        yield injector, peers["srv"], peers["cli"], run_id
    finally:
        injector.undo_all()
        engine.remove_run(client, run_id)
        flt = {"label": f"{engine.LABEL_RUN}={run_id}"}
        assert client.containers.list(all=True, filters=flt) == []
        assert client.networks.list(filters=flt) == []


@pytest.fixture(scope="module")
def pair(engine_client):
    with lab_pair(engine_client, "m") as got:
        yield got


def client_says(cli, srv, mode="ping", timeout=1.0, n=0, where=None):
    """Run the client in `cli` against `srv` (or `where`: another host name); its JSON answer."""
    code, out = cli.exec_run(["python3", "-c", CLIENT, mode, where or srv.name, str(PORT), str(timeout), str(n)])
    assert code == 0, out
    return json.loads(out.decode().strip().splitlines()[-1])


def wait_for_server(cli, srv):
    deadline = time.monotonic() + 20
    while not client_says(cli, srv)["ok"]:
        assert time.monotonic() < deadline, "the test's server never answered"
        time.sleep(0.2)


def host_rules(own_bridge: str = "") -> str | None:
    """The host's iptables and ip6tables rules without counters and without other Docker
    networks' bridge rules (other labs create and remove networks meanwhile); None when this
    host has no iptables-save."""
    if not shutil.which("iptables-save"):
        return None
    text = ""
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            text += subprocess.run([tool], capture_output=True, text=True).stdout
    keep = [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(line for line in keep if not re.search(r"br-[0-9a-f]{12}", line) or own_bridge in line)


def sidecars(client, run_id):
    return client.containers.list(all=True, filters={"label": [f"{engine.LABEL_RUN}={run_id}", "org.zmqlab.role=sidecar"]})


def show(window):
    print("\n", json.dumps(window.to_dict()), flush=True)
    assert window.undone and window.error is None, window
    assert window.start_ns < window.end_ns


# ------------------------------------------------------------------ each fault, for real

@pytest.mark.docker
def test_the_probe_reports_every_feature_with_a_reason_where_missing(pair, engine_client):
    from lab.backends.faults import FEATURES, FaultUnsupported, describe
    injector, srv, cli, run_id = pair
    found = injector.probe(srv)
    print("\nprobe:", describe(found), "\n", json.dumps(found), flush=True)
    assert list(found) == list(FEATURES)
    assert found["iptables"] is None and found["tbf"] is None, found     # the other tests need them
    assert injector.probe(cli) == found                                  # once per injector
    assert sidecars(engine_client, run_id) == []                         # the probe's sidecar is gone
    assert client_says(cli, srv)["ok"]                                   # and left nothing in the way
    if found["netem"] is not None:                                       # this machine: no sch_netem
        assert "netem" in found["netem"] and len(found["netem"]) > len("netem"), found
        for spec in ("delay:rx@0+1=50ms", "loss:rx@0+1=10%"):
            with pytest.raises(FaultUnsupported, match="netem") as why:
                injector.start(parse(spec), srv)
            print(spec, "->", why.value.reason, flush=True)
    else:                                                                # a kernel with netem
        applied = injector.start(parse("delay:rx@0+1=50ms"), srv)
        slow = client_says(cli, srv)
        show(injector.end(applied))
        assert slow["ok"] and slow["seconds"] >= 0.1, slow


@pytest.mark.docker
def test_partition_stops_traffic_on_the_lab_interface_only_and_heal_restores_it(pair, engine_client):
    injector, srv, cli, run_id = pair
    bridge = "br-" + engine_client.networks.list(filters={"label": f"{engine.LABEL_RUN}={run_id}"})[0].id[:12]
    before = host_rules(bridge)
    assert client_says(cli, srv)["ok"]
    applied = injector.start(parse("partition:rx@0+2"), srv)
    cut = client_says(cli, srv)
    own = client_says(srv, srv, where="127.0.0.1")                        # srv's loopback still serves
    during = host_rules(bridge)
    window = injector.end(applied)
    after = client_says(cli, srv)
    print("\ncut:", cut, "own loopback:", own, "after:", after)
    show(window)
    assert not cut["ok"] and cut["error"] in ("TimeoutError", "timeout", "EHOSTUNREACH"), cut
    assert own["ok"], own
    assert after["ok"], after
    assert "-j DROP" in window.detail and "eth0" in window.detail and " lo " not in window.detail
    assert sidecars(engine_client, run_id) == []
    if before is None:
        print("no iptables-save on this host: the host's rules are not compared")
    else:
        assert during == before and host_rules(bridge) == before         # the host's rules never changed
        print("host iptables-save/ip6tables-save: identical before, during and after "
              f"({len(before.splitlines())} lines compared)")


@pytest.mark.docker
def test_reset_makes_a_connect_fail_with_a_reset_and_heal_restores_it(pair, engine_client):
    injector, srv, cli, run_id = pair
    bridge = "br-" + engine_client.networks.list(filters={"label": f"{engine.LABEL_RUN}={run_id}"})[0].id[:12]
    before = host_rules(bridge)
    applied = injector.start(parse("reset:receiver@0+2"), srv)
    refused = client_says(cli, srv, timeout=5)
    during = host_rules(bridge)
    window = injector.end(applied)
    print("\nduring reset:", refused)
    show(window)
    assert not refused["ok"] and refused["error"] in ("ECONNREFUSED", "ECONNRESET"), refused
    assert refused["seconds"] < 2, refused                                # an answer, not a timeout
    assert client_says(cli, srv)["ok"]
    if before is not None:
        assert during == before and host_rules(bridge) == before


@pytest.mark.docker
def test_pause_freezes_the_peer_so_a_ping_times_out_then_thaw(pair):
    injector, srv, cli, run_id = pair
    applied = injector.start(parse("pause:rx@0+1"), srv)
    srv.reload()
    state = dict(srv.attrs["State"])
    frozen = client_says(cli, srv, timeout=1.0)
    window = injector.end(applied)
    print("\npaused:", frozen, "state then:", state["Status"], "paused:", state["Paused"])
    show(window)
    assert state["Paused"] is True
    assert not frozen["ok"] and frozen["error"] in ("TimeoutError", "timeout"), frozen
    assert client_says(cli, srv)["ok"]
    srv.reload()
    assert srv.attrs["State"]["Status"] == "running" and not srv.attrs["State"]["Paused"]


@pytest.mark.docker
def test_bandwidth_slows_transfers_both_ways(pair):
    injector, srv, cli, run_id = pair
    n = 1_000_000
    base = {m: client_says(cli, srv, m, timeout=30, n=n) for m in ("up", "down")}
    applied = injector.start(parse("bandwidth:rx@0+10=8mbit"), srv)      # 8 mbit/s = 1 MB/s
    try:
        slow = {m: client_says(cli, srv, m, timeout=30, n=n) for m in ("up", "down")}
    finally:
        window = injector.end(applied)
    again = client_says(cli, srv, "up", timeout=30, n=n)
    print("\nbytes/s without:", {m: round(r["rate"]) for m, r in base.items()},
          "at 8mbit:", {m: round(r["rate"]) for m, r in slow.items()}, "after:", round(again["rate"]))
    show(window)
    for m in ("up", "down"):                     # srv's incoming (ifb) and outgoing (tbf) side
        assert base[m]["ok"] and slow[m]["ok"], (base, slow)
        assert slow[m]["rate"] < 3e6, slow[m]                             # 1 MB/s, loosely
        assert slow[m]["rate"] < base[m]["rate"] / 4, (base[m], slow[m])
    assert again["rate"] > slow["up"]["rate"] * 4, again


@pytest.mark.docker
def test_undo_all_heals_and_unpauses_everything_twice_over_and_with_peers_gone(engine_client):
    with lab_pair(engine_client, "u") as (injector, srv, cli, run_id):
        injector.start(parse("partition:rx@0+5"), srv)
        injector.start(parse("pause:tx@0+5"), cli)
        assert len(sidecars(engine_client, run_id)) == 1                  # the partition's, kept for its heal
        windows = injector.undo_all()
        for w in windows:
            show(w)
        assert sorted(w.kind for w in windows) == ["partition", "pause"]
        assert client_says(cli, srv)["ok"]                                # healed and thawed
        assert injector.undo_all() == [] and sidecars(engine_client, run_id) == []
        # the peers removed from under applied faults: undo_all neither raises nor leaves a sidecar
        injector.start(parse("partition:rx@0+5"), srv)
        injector.start(parse("pause:tx@0+5"), cli)
        srv.remove(force=True)
        cli.remove(force=True)                                            # a paused one too
        windows = injector.undo_all()
        for w in windows:
            print("\n", json.dumps(w.to_dict()))
        assert len(windows) == 2 and all(w.undone for w in windows), windows
        assert sidecars(engine_client, run_id) == []


# A lab in miniature that applies a partition and a pause, then waits to be killed with -9.
LAB = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import time
    from lab import engine, reaper
    from lab.backends.faults import FaultInjector
    from lab.faults import parse
    from tests.test_docker_faults import lab_pair
    client = engine.connect()
    ctx = lab_pair(client, "k9")
    injector, srv, cli, run_id = ctx.__enter__()
    reaper.spawn(run_id)
    injector.start(parse("partition:rx@0+60"), srv)
    injector.start(parse("pause:tx@0+60"), cli)
    print(run_id, flush=True)
    time.sleep(600)
""")


@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_of_the_lab_mid_fault_the_reaper_removes_sidecar_and_paused_peer(engine_client):
    proc = subprocess.Popen([sys.executable, "-c", LAB, "x", str(REPO)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id.startswith("test-faults-k9-"), run_id
        flt = {"label": f"{engine.LABEL_RUN}={run_id}"}
        assert len(engine_client.containers.list(all=True, filters=flt)) == 3      # srv, cli, sidecar
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while engine_client.containers.list(all=True, filters=flt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine_client.containers.list(all=True, filters=flt) == []
    while engine_client.networks.list(filters=flt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine_client.networks.list(filters=flt) == []
