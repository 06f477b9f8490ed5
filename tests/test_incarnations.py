"""A sender killed with kill -9 mid-run and started again (--incarnations N on the receiver,
--incarnation K on each sender; scenarios/incarnations.py), run for real on the pyzmq-25.1.2
wheel: the receiver and two sender processes started as scenarios/roles.py launch_processes
starts them, the first sender's process group SIGKILLed while it is still sending (--rate)."""
import json
import os
import signal
import subprocess
import time

import pytest

from lab import fault_verdicts, schemas
from lab.backends.local import REPO
from scenarios import evidence, flags, incarnations
from tests.test_roles import split

PEER_GRACE_S = 1.0      # scenarios/roles.py's (which imports zmq: not in the lab's own venv)
BASE = ["--pattern", "pushpull", "--transport", "tcp", "--threads", "3", "--msgs", "200", "--sleep", "0",
        "--quiet", "--topology", "processes", "--rate", "100"]


class Lab:
    """The receiver and its senders, each in its own process group; whatever is still alive at
    the end is killed by its own pid (nothing else)."""

    def __init__(self, local, flags_):
        backend, target = local
        self.cmd = [str(backend.python(target)), "-m", "scenarios", *BASE, *flags_]
        self.procs = []
        self.receiver = self.start(["--role", "receiver", "--announce"])
        self.ready = json.loads(self.receiver.stdout.readline())["ready"]

    def start(self, extra, cmd=None):
        proc = subprocess.Popen((cmd or self.cmd) + extra, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def sender(self, incarnation=1, cmd=None):
        extra = ["--role", "sender", "--connect", self.ready["bind"], "--report", self.ready["report"]]
        return self.start(extra + (["--incarnation", str(incarnation)] if incarnation != 1 else []), cmd)

    @staticmethod
    def kill(proc):
        """kill -9 of the sender's whole process group; (when it was sent, when the process was
        gone), on the host's clock, which is the receiver's."""
        at = time.time_ns()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return at, time.time_ns()

    def report(self, timeout=30):
        out = self.receiver.communicate(timeout=timeout)[0].decode()
        return json.loads(out.splitlines()[-1])

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def lab(local):
    made = []

    def make(*flags_):
        made.append(Lab(local, flags_))
        return made[-1]
    yield make
    for one in made:
        one.close()


def test_a_killed_sender_started_again_delivers_everything_and_recovers(lab):
    run = lab("--incarnations", "2", "--ping-log")
    first = run.sender()
    time.sleep(0.8)                         # 200 pings at 100/s per thread: mid-run
    killed_at, gone_at = Lab.kill(first)
    time.sleep(0.3)
    restarted_at = time.time_ns()
    second = run.sender(incarnation=2)
    report = run.report()
    second.communicate(timeout=10)
    schemas.validate("run", report)

    assert report["outcome"] == "ok", report["reason"]
    assert report["params"]["incarnations"] == 2 and "incarnation" not in report["params"]
    rows = report["threads"]
    assert [(r["id"], r["incarnation"]) for r in rows] == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]
    for r in rows[:3]:
        # what it got out before the kill: all that counts (the rest died with the process)
        assert r["state"] == "killed" and 0 < r["received"] < 200, r
        assert r["attempted"] == r["completed"] == r["received"] and r["missing"] == 0
    for r in rows[3:]:
        assert r["state"] == "done" and r["received"] == r["completed"] == 200, r
    assert report["totals"]["expected"] == 600 + sum(r["completed"] for r in rows[:3])
    assert [(p["incarnation"], p["account"]) for p in report["peers"]] == [(1, "killed"), (2, "final")]
    assert report["peers"][0]["pid"] == first.pid and report["peers"][1]["pid"] == second.pid

    # The ping log and the timeline say (thread id, incarnation), as lab/fault_verdicts.py reads them.
    pings = report["pings"]["threads"]
    assert [(p["id"], p["incarnation"]) for p in pings] == [(r["id"], r["incarnation"]) for r in rows]
    for p, r in zip(pings, rows):
        got = [t for t in p["recv_ns"] if t is not None]
        assert len(got) == r["received"]
        if r["incarnation"] == 1:           # send times from the pings that arrived; none past them
            assert all(s is not None for s in p["sent_ns"][:r["completed"]])
            assert all(s is None for s in p["sent_ns"][r["completed"]:])
            assert p["sent_upper_bound"] == [] and max(p["sent_ns"][:r["completed"]]) < gone_at
        else:                               # the second incarnation starts after the kill
            assert min(got) > killed_at and min(p["sent_ns"]) > restarted_at
    t0 = report["timeline"]["t0_ns"]
    tl = {(t["id"], t["incarnation"]): t for t in report["timeline"]["threads"]}
    for tid in range(3):
        # (pings of the first one still in flight may arrive just after the kill was sent)
        assert tl[(tid, 2)]["first_recv_ms"] > (restarted_at - t0) / 1e6 > tl[(tid, 1)]["last_recv_ms"]
        assert tl[(tid, 1)]["first_recv_ms"] < (killed_at - t0) / 1e6
        assert tl[(tid, 2)]["first_recv_seq"] == 1
    assert {e.get("incarnation") for e in report["timeline"]["events"] if e["side"] == "sender"
            and e["thread"] is not None} == {2}     # the killed one's monitor died with it

    # Recovery: from the restart to the first ping of each thread's second incarnation.
    report["faults"] = [{"kind": "kill", "target": "sender", "start_ns": killed_at, "end_ns": restarted_at,
                         "undone": True, "error": None}]
    outcome = fault_verdicts.analyse(report)
    window = outcome.windows[0]
    assert outcome.lost_inside == outcome.lost_outside == 0
    assert sorted(k for k, _ in window.recovery_ms) == ["0/2", "1/2", "2/2"] and not window.never_recovered
    assert all(0 < ms < 5000 for _, ms in window.recovery_ms), window.recovery_ms


def test_a_gap_below_the_killed_senders_last_ping_is_still_lost(lab):
    # The first incarnation drops #5 of thread 1 (counted as sent, never sent); killed later,
    # its last ping says #5 was sent before it: lost, with its send time bounded by #6's.
    run = lab("--incarnations", "2", "--ping-log")
    first = run.sender(cmd=run.cmd + ["--inject", "drop:1:5"])
    time.sleep(0.8)
    Lab.kill(first)
    run.sender(incarnation=2)
    report = run.report()
    assert report["outcome"] == "lost", report["reason"]
    assert "thread 1 got #6 expecting #5" in report["reason"]
    rows = {(r["id"], r["incarnation"]): r for r in report["threads"]}
    assert rows[(1, 1)]["missing"] == 1 and rows[(1, 1)]["state"] == "killed"
    assert report["totals"]["missing"] == 1
    pings = {(p["id"], p["incarnation"]): p for p in report["pings"]["threads"]}
    assert pings[(1, 1)]["sent_upper_bound"] == [5]
    assert pings[(1, 1)]["sent_ns"][4] == pings[(1, 1)]["sent_ns"][5] and pings[(1, 1)]["recv_ns"][4] is None


def test_no_second_incarnation_still_ends_the_run_as_a_silent_sender(lab):
    run = lab("--incarnations", "2", "--ping-log", "--stall", "1")
    first = run.sender()
    time.sleep(0.6)
    killed_at, _ = Lab.kill(first)
    report = run.report(timeout=1 + PEER_GRACE_S + 10)
    waited = (time.time_ns() - killed_at) / 1e9
    assert report["outcome"] == "deadlock" and report["classified_by"] == "watchdog", report["reason"]
    assert "no account from the sender process" in report["reason"]
    assert waited < 1 + PEER_GRACE_S + 1.5, waited
    assert [(p["incarnation"], p["account"]) for p in report["peers"]] == [(1, "none"), (2, "none")]
    assert {r["state"] for r in report["threads"]} == {"no-account"}
    schemas.validate("run", report)


def test_a_default_run_states_no_incarnation_anywhere(local):
    report = split(local, threads=2, msgs=50, extra=("--ping-log",)).runs[0].report
    assert report["outcome"] == "ok", report["reason"]
    assert "incarnations" not in report["params"] and "incarnation" not in report["params"]
    assert all(set(r) == {"id", "attempted", "completed", "received", "missing", "duplicates", "reorders",
                          "first_gap", "state", "would_block"} for r in report["threads"])
    assert [set(p) for p in report["pings"]["threads"]] == [{"id", "sent_ns", "recv_ns"}] * 2
    assert [r["id"] for r in report["timeline"]["threads"]] == [0, 1]
    assert not any("incarnation" in t for t in report["timeline"]["threads"] + report["timeline"]["events"])
    assert [p["account"] for p in report["peers"]] == ["final"] and "incarnation" not in report["peers"][0]


# ---- the flags and the pure parts ------------------------------------------------------------

ROLE = ["--pattern", "pushpull", "--transport", "tcp", "--topology", "containers"]
SENDER = ROLE + ["--role", "sender", "--connect", "tcp://a:1", "--report", "tcp://a:2"]


def test_flags_default_to_one_and_are_stated_only_when_not():
    args = flags.parse(ROLE + ["--role", "receiver"])
    assert (args.incarnations, args.incarnation) == (1, 1)
    assert not {"incarnations", "incarnation"} & set(flags.params(args))
    assert flags.params(flags.parse(ROLE + ["--role", "receiver", "--incarnations", "2"]))["incarnations"] == 2
    sender = flags.parse(SENDER + ["--incarnations", "3", "--incarnation", "3"])
    assert (sender.incarnations, sender.incarnation) == (3, 3)


@pytest.mark.parametrize("argv,says", [
    (SENDER + ["--incarnation", "0"], "at least 1"),
    (ROLE + ["--role", "receiver", "--incarnations", "0"], "at least 1"),
    (SENDER + ["--incarnation", "2"], "past --incarnations 1"),
    (ROLE + ["--role", "receiver", "--incarnations", "2", "--incarnation", "2"], "needs --journal"),
    (["--pattern", "pushpull", "--incarnation", "2"], "for --role sender or receiver"),
    (["--pattern", "pushpull", "--incarnations", "2"], "needs --role"),
    (["--pattern", "pushpull", "--transport", "tcp", "--topology", "processes", "--incarnations", "2"], "needs --role"),
])
def test_bad_incarnation_flags_are_one_line_errors(argv, says):
    with pytest.raises(flags.FlagError, match=says):
        flags.parse(argv)


def test_a_killed_threads_send_times_past_its_last_ping_are_unknown_and_gaps_bounded():
    sent = [10, None, 30, None, None, 60, None, None]          # #2, #4, #5 lost; killed after #6
    assert incarnations.killed_sent(sent, 6) == ([10, 30, 30, 60, 60, 60, None, None], [2, 4, 5])
    assert incarnations.killed_sent([None] * 3, 0) == ([None] * 3, [])


def test_killed_threads_are_not_stuck_and_a_silent_last_incarnation_is():
    def row(tid, k, state, completed=5, received=5):
        return {"id": tid, "incarnation": k, "attempted": completed, "completed": completed, "received": received,
                "missing": completed - received, "duplicates": 0, "reorders": 0, "first_gap": None, "state": state}
    killed = [row(0, 1, "killed"), row(1, 1, "killed")]
    assert "killed" not in evidence.BUSY_STATES
    assert evidence.classify(killed + [row(0, 2, "done"), row(1, 2, "done")], True, False, "done")[0] == "ok"
    outcome, reason = evidence.classify(killed + [row(0, 2, "no-account", 0, 0)] * 2, False, True, "no-account")
    assert outcome == "deadlock" and "no account from the sender process" in reason
    outcome, reason = evidence.classify(killed + [row(0, 2, "send", 9, 9)], False, True, "done")
    assert outcome == "deadlock" and "thread 0/2 in send of #9" in reason and "thread 0 " not in reason


def test_peers_name_every_incarnation():
    accounts = [{"role": "sender", "account": "final", "pid": 9, "incarnation": 3}]
    hellos = {1: {"pid": 7, "host": "h"}}
    out = incarnations.peers(accounts, hellos, current=3, incarnations=3)
    assert [(p["incarnation"], p["account"], p.get("pid")) for p in out] == [(1, "killed", 7), (2, "killed", None),
                                                                            (3, "final", 9)]
    assert [p["account"] for p in incarnations.peers([], {}, 1, 2)] == ["none", "none"]


def test_the_senders_own_output_goes_to_the_silent_incarnation_not_the_killed_one():
    from scenarios import merge
    doc = {"schema": "zmqlab.sender/1", "account": {"kind": "stalled", "stacks": {"control-0": "frame"}}}
    report = {"outcome": "deadlock", "reason": "r", "stall": {"stacks": {}},
              "peers": [{"role": "sender", "incarnation": 1, "account": "killed"},
                        {"role": "sender", "incarnation": 2, "account": "none"}]}
    out = merge.attach(report, json.dumps(doc), "")
    assert "own" not in out["peers"][0] and out["peers"][1]["own"] == doc["account"]
    assert out["stall"]["stacks"] == {"sender: control-0": "frame"}
    # a killed incarnation alone is not a silent sender: nothing to attach
    done = dict(report, peers=[report["peers"][0], dict(report["peers"][1], account="final")])
    assert merge.attach(done, json.dumps(doc), "") is done
