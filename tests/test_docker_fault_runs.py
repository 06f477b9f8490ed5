"""Faults in real runs (containers topology, real pinned images): the backend applies the
cell's fault to its peer mid-run and undoes it, the report carries the window, every ping's
times, the window's verdict against libzmq's sourced promise, and the fault's edges on the
timeline; the host's iptables are the same afterwards and nothing of the run is left."""
import pytest

from lab import engine
from lab.cells import Cell
from lab.faults import parse
from lab.requests import RunSettings
from lab.runner import run_cell
from tests.conftest import docker_run
from tests.test_docker_faults import host_rules

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PIN = "pyzmq-25.1.2"


def one_run(backend, cell, stall=4.0) -> dict:
    """One run of `cell` on the fixture's backend: its report (the verdict line printed)."""
    b, target = backend
    verdict = run_cell(b, target, cell, RunSettings(repeat=1, stall=stall))
    print("\n" + verdict.summary_line())
    return verdict.runs[0].report


@pytest.fixture
def backend(engine_client, built_images):
    with docker_run(engine_client, "test-fault-runs") as b:
        assert b.prepare(built_images[PIN]) is None
        yield b, built_images[PIN]
    left = engine_client.containers.list(all=True, filters={"label": "org.zmqlab.role=sidecar"})
    assert not [c for c in left if c.labels.get(engine.LABEL_RUN, "").startswith("test-fault-runs")]


@pytest.mark.parametrize("spec", ["partition:receiver@0.8+1", "pause:receiver@0.8+1", "reset:sender@0.8+1"])
def test_a_fault_is_applied_mid_run_undone_and_judged(backend, spec):
    before = host_rules("no-bridge-of-ours")      # the run makes and removes its own bridge: left out
    cell = Cell(PIN, "pushpull", "tcp", threads=3, msgs=60, topology="containers", fault=parse(spec))
    report = one_run(backend, cell)
    window = report["faults"][0]
    assert window["undone"] and window["error"] is None, window
    assert window["start_ns"] < window["end_ns"]
    assert 0.9e9 <= window["end_ns"] - window["start_ns"] <= 3e9     # ~1 s, plus applying and healing
    pings = report["pings"]["threads"]
    assert len(pings) == 3 and all(len(t["sent_ns"]) == 60 for t in pings)
    sent = [s for t in pings for s in t["sent_ns"] if s is not None]
    assert min(sent) < window["start_ns"] < max(sent), "the senders were paced to straddle the fault"
    block = report["fault"]
    assert block["judged"] in ("expected", "unexpected", "no-promise") and block["explain"]
    assert {"FAULT_START", "FAULT_END"} <= {e["event"] for e in report["timeline"]["events"]}
    assert "paused by someone else" not in report["reason"]     # the lab's own pause is the finding
    assert host_rules("no-bridge-of-ours") == before
    # a run with a fault has peers of its own: pausing or partitioning a shared one would hit
    # every other run under way in it
    assert "-%s-fault-" % {"receiver": "rx", "sender": "tx"}[window["target"]] in window["detail"], window["detail"]
    assert window["effective_ns"] and window["start_ns"] <= window["effective_ns"] <= window["end_ns"]


def test_a_fault_after_k_pings_starts_once_the_receiver_has_them(backend):
    cell = Cell(PIN, "pushpull", "tcp", threads=3, msgs=60, topology="containers", fault=parse("partition:rx@after60+1"))
    report = one_run(backend, cell)
    window = report["faults"][0]
    assert window["error"] is None and window["undone"], window
    received = sorted(r for t in report["pings"]["threads"] for r in t["recv_ns"] if r is not None)
    assert len(received) >= 60 and received[59] <= window["start_ns"], "applied before the 60th ping came"
    assert received[59] >= window["start_ns"] - 2 * 10**9, "applied long after the 60th ping"


@pytest.mark.parametrize("pattern, variant, sync, spec", [
    ("pushpull", "default", "none", "kill:sender@0.8+0.5"),
    ("pushpull", "default", "none", "kill:receiver@0.8+0.5"),
    ("pubsub", "pub-binds", "xpub", "kill:sender@0.8+0.5"),
])
def test_a_killed_peer_is_started_again_in_its_container_and_judged(backend, pattern, variant, sync, spec):
    cell = Cell(PIN, pattern, "tcp", variant=variant, sync=sync, threads=3, msgs=60, topology="containers",
                fault=parse(spec))
    report = one_run(backend, cell)
    window = report["faults"][0]
    assert window["undone"] and window["error"] is None, window
    assert "SIGKILL to the %s's processes" % window["target"] in window["detail"]
    assert "started again" in window["detail"] and "--incarnation 2" in window["detail"]
    if window["target"] == "receiver":
        # the restarted receiver carried the killed one's counts over: nothing before the kill is lost
        assert report["receiver_restarts"][0]["pings_replayed"] > 0, report.get("receiver_restarts")
        assert report["params"]["incarnation"] == 2
    else:
        assert [(p["incarnation"], p["account"]) for p in report["peers"]] == [(1, "killed"), (2, "final")]
    block = report["fault"]
    if (pattern, window["target"]) == ("pushpull", "sender"):
        # no source states what a PUSH's kill -9 costs (what the dead process held is gone):
        # the lab says so rather than invent a promise
        assert block["judged"] == "no-promise", block
    else:
        assert block["judged"] == "expected", (block["why"], block["explain"])
    if variant == "pub-binds":          # the SUB reconnected and resent its subscription (#916)
        assert "session_base.cpp" in block["expectation"]["source_url"]
        assert report["outcome"] == "ok", report["reason"]
    assert block["outcome"]["windows"][0]["recovery_ms"] and not block["outcome"]["windows"][0]["never_recovered"]


def test_a_req_whose_rep_is_killed_mid_request_hangs_and_only_it(backend):
    # paced past what a REQ/REP round trip allows, the REQs always have a request out: the
    # killed REP's are never answered (zguide ch. 4)
    cell = Cell(PIN, "reqrep", "tcp", threads=3, msgs=20000, topology="containers", fault=parse("kill:rx@0.8+0.5"))
    report = one_run(backend, cell)
    assert report["outcome"] == "deadlock", report["reason"]
    block = report["fault"]
    window = block["outcome"]["windows"][0]
    assert block["judged"] == "expected" and window["waiting_at_fault"] and not window["hung_after"], block
    assert block["expectation"]["expected"] == "hang-if-waiting"
