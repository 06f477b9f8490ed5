"""A receiver killed with kill -9 mid-run and started again in its place (kill:receiver;
scenarios/journal.py): run for real on the pyzmq-25.1.2 wheel, the two sides as separate
processes at fixed loopback ports (the restarted receiver binds the same ones, as it does at the
same address in its container), the first receiver's process group SIGKILLed mid-run."""
import json
import os
import signal
import socket
import time

import pytest

from lab import fault_verdicts, schemas
from scenarios import flags, journal
from tests.test_incarnations import Lab

BASE = ["--transport", "tcp", "--threads", "3", "--msgs", "200", "--sleep", "0", "--quiet",
        "--topology", "processes", "--rate", "100", "--ping-log", "--full-drain"]


def free_ports():
    """Two ports the OS just handed out and took back (the receiver binds P and P + 1 as in
    lab/backends/peers.py; retried until both are free)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on loopback")


class Run(Lab):
    """The receiver (restartable) and one sender, each in its own process group; whatever is
    still alive at the end is killed by its own pid (nothing else: Lab.close)."""

    def __init__(self, local, tmp_path, pattern, extra=()):
        backend, target = local
        port = free_ports()
        self.cmd = [str(backend.python(target)), "-m", "scenarios", "--pattern", pattern, *BASE, *extra]
        self.journal = str(tmp_path / "receiver.journal")
        self.rx_cmd = self.cmd + ["--role", "receiver", "--bind", f"tcp://127.0.0.1:{port}",
                                  "--report-bind", f"tcp://127.0.0.1:{port + 1}", "--journal", self.journal]
        self.procs = []
        self.receiver = self.start([], self.rx_cmd)
        self.sender = self.start(["--role", "sender", "--connect", f"tcp://127.0.0.1:{port}",
                                  "--report", f"tcp://127.0.0.1:{port + 1}"])

    def taken(self, n, deadline_s=20.0):
        """Wait until the receiver's journal holds n messages (a loaded machine starts slowly)."""
        until = time.monotonic() + deadline_s
        while time.monotonic() < until:
            try:
                if len(journal.read(self.journal)[1]) >= n:
                    return
            except journal.JournalError:
                pass                        # not bound yet: no journal
            time.sleep(0.02)
        raise AssertionError(f"the receiver took fewer than {n} messages in {deadline_s:g} s")

    def kill_and_restart(self, down_s):
        """kill -9 the receiver, start it again after `down_s`; the fault window (host clock)."""
        killed_at = time.time_ns()
        os.killpg(self.receiver.pid, signal.SIGKILL)
        self.receiver.wait()
        gone_at = time.time_ns()
        time.sleep(down_s)
        restarted_at = time.time_ns()
        self.receiver = self.start(["--incarnation", "2"], self.rx_cmd)
        return {"kind": "kill", "target": "receiver", "start_ns": killed_at, "effective_ns": gone_at,
                "lifting_ns": restarted_at, "end_ns": restarted_at, "undone": True, "error": None}


@pytest.fixture
def lab(local, tmp_path):
    made = []

    def make(pattern, *extra):
        made.append(Run(local, tmp_path, pattern, extra))
        return made[-1]
    yield make
    for one in made:
        one.close()


def test_a_killed_receiver_started_again_keeps_the_killed_ones_counts(lab):
    run = lab("pushpull", "--stall", "3")
    run.taken(3 * 60)                       # 200 pings at 100/s per thread: mid-run
    window = run.kill_and_restart(0.5)
    report = run.report()
    schemas.validate("run", report)

    restart = report["receiver_restarts"][0]
    assert restart["incarnation"] == 2 and restart["pings_replayed"] >= 3 * 60, restart
    assert report["params"]["incarnation"] == 2
    assert report["shutdown_received"] and [p["account"] for p in report["peers"]] == ["final"]
    pings = report["pings"]["threads"]
    for r, p in zip(report["threads"], pings):
        assert r["state"] == "done" and r["completed"] == 200, r
        got = [t for t in p["recv_ns"] if t is not None]
        assert len(got) == r["received"] == 200 - r["missing"]
        # the killed receiver's share is in the report: taken before the kill, as journaled
        assert sum(1 for t in got if t < window["start_ns"]) > 30
        assert sum(1 for t in got if t > window["lifting_ns"]) > 0
        # anything lost was in flight at the kill: sent near it, not long before or after
        for seq, (sent, recv) in enumerate(zip(p["sent_ns"], p["recv_ns"]), 1):
            if recv is None:
                assert window["start_ns"] - 500e6 < sent < window["end_ns"] + 500e6, (r["id"], seq)
    # the timeline keeps the first receiver's origin: its first pings are not before t0
    t0 = report["timeline"]["t0_ns"]
    assert t0 < window["start_ns"] and min(t["first_recv_ms"] for t in report["timeline"]["threads"]) > 0

    report["faults"] = [window]
    outcome = fault_verdicts.analyse(report)
    assert outcome.lost_outside == 0, outcome
    assert not outcome.windows[0].never_recovered
    assert sorted(k for k, _ in outcome.windows[0].recovery_ms) == ["0", "1", "2"]


def test_a_req_whose_rep_was_killed_mid_request_waits_for_its_reply_forever(lab):
    # zguide chapter 4 (lab/expectations.py req-rep-killed): "If the server crashes while
    # processing the request, the client just hangs forever." Unpaced, every REQ always has a
    # request out: the ones the killed REP had taken are never answered, and a REQ sends nothing
    # more until it has its reply. The sender's own watchdog reports them in wait-reply.
    run = lab("reqrep", "--stall", "2", "--msgs", "20000", "--rate", "0")
    run.taken(3000)
    window = run.kill_and_restart(0.3)
    report = run.report(timeout=60)
    assert report["outcome"] == "deadlock", report["reason"]
    assert report["receiver_restarts"][0]["pings_replayed"] > 0
    stuck = [r for r in report["threads"] if r["state"] == "wait-reply"]
    assert stuck and all(r["completed"] < 20000 for r in stuck), report["threads"]
    assert any("recv" in stack for stack in report["stall"]["stacks"].values()), list(report["stall"]["stacks"])
    report["faults"] = [window]
    w = fault_verdicts.analyse(report).windows[0]
    assert sorted(w.waiting_at_fault) == sorted(str(r["id"]) for r in stuck) and w.hung_after == ()
    assert "waiting for a reply since before the fault" in fault_verdicts.explain(fault_verdicts.analyse(report))


def test_a_req_between_requests_when_its_rep_was_killed_goes_on_with_the_new_one(lab):
    # Paced (100/s), a REQ spends its time asleep between a reply and its next request: that
    # request goes into the pipe libzmq keeps while it reconnects and the restarted REP answers
    # it. Only a thread whose request was out at the kill (rare at this pace) may hang, and only
    # such a thread: one stuck on a request sent after the kill would contradict the zguide.
    run = lab("reqrep", "--stall", "2")
    run.taken(3 * 60)
    window = run.kill_and_restart(0.3)
    report = run.report(timeout=20)
    report["faults"] = [window]
    w = fault_verdicts.analyse(report).windows[0]
    assert w.hung_after == ()
    for r in report["threads"]:
        assert r["completed"] == r["received"] == 200 or str(r["id"]) in w.waiting_at_fault, r
    assert report["outcome"] == ("deadlock" if w.waiting_at_fault else "ok"), report["reason"]


def test_a_restarted_receiver_without_its_journal_is_one_line_error():
    argv = ["--pattern", "pushpull", "--transport", "tcp", "--topology", "containers", "--role", "receiver",
            "--incarnation", "2"]
    with pytest.raises(flags.FlagError, match="needs --journal"):
        flags.parse(argv)
    assert flags.parse(argv + ["--journal", "/tmp/j"]).journal == "/tmp/j"


# ---- the journal itself (pure) ---------------------------------------------------------------

def test_the_journal_reads_back_what_was_written_and_drops_a_record_cut_by_the_kill(tmp_path):
    path = str(tmp_path / "j")
    w = journal.Writer(path, 123)
    w.record(5, b"Pabc")
    w.record(7, b"{}")
    w.close()
    assert journal.read(path) == (123, [(5, b"Pabc"), (7, b"{}")])
    w = journal.Writer(path, 999, append=True)      # the restarted receiver appends, same header
    w.record(9, b"x")
    w.close()
    with open(path, "ab") as f:                     # a record the kill cut short
        f.write(journal.RECORD.pack(11, 10) + b"abc")
    assert journal.read(path) == (123, [(5, b"Pabc"), (7, b"{}"), (9, b"x")])


@pytest.mark.parametrize("content,says", [(None, "cannot read"), (b"", "not a receiver's journal"),
                                          (b"zmqlab-journal/1 x\n", "not a receiver's journal"),
                                          (b"something else\n", "not a receiver's journal")])
def test_a_missing_or_foreign_journal_says_so(tmp_path, content, says):
    path = tmp_path / "j"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(journal.JournalError, match=says):
        journal.read(str(path))
