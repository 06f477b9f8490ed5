"""Real scenarios on a real pyzmq/libzmq (pyzmq-25.1.2 wheel, libzmq 4.3.4) in local processes,
at small sizes. The fault injector proves the detector: a dropped ping is always `lost` with
the exact gap, a blocked sender always `deadlock`."""
import os
import subprocess

import pytest

from lab import schemas
from lab.backends.local import REPO
from lab.cells import Cell
from lab.requests import RunSettings
from lab.runner import run_cell


def run(local, pattern="pushpull", transport="inproc", repeat=1, stall=1.0, inject=None, nowait=False,
        extra_flags=(), **kw):
    backend, target = local
    cell = Cell(target.name, pattern, transport, threads=kw.pop("threads", 4), msgs=kw.pop("msgs", 200), **kw)
    extra = (("--inject", inject) if inject else ()) + (("--nowait",) if nowait else ()) + tuple(extra_flags)
    settings = RunSettings(repeat=repeat, stall=stall, extra=extra)
    return run_cell(backend, target, cell, settings)


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
@pytest.mark.parametrize("pattern", ["pushpull", "routerdealer"])
def test_blocking_patterns_deliver_everything(local, pattern, transport):
    verdict = run(local, pattern, transport, threads=10, msgs=300)
    report = verdict.runs[0].report
    assert verdict.worst == "ok", verdict.summary_line()
    assert report["totals"]["received"] == report["totals"]["expected"] == 3000
    assert report["versions"]["pyzmq"] == "25.1.2" and report["versions"]["libzmq"] == "4.3.4"
    schemas.validate("run", report)


@pytest.mark.parametrize("spec,thread,expected,got", [("drop:17", 0, 17, 18), ("drop:2:1", 2, 1, 2),
                                                      ("drop:3:200", 3, 200, None)])
def test_dropped_ping_is_always_lost_with_the_exact_gap(local, spec, thread, expected, got):
    verdict = run(local, inject=spec, repeat=3)
    assert verdict.counts.get("lost") == 3, verdict.summary_line()
    for r in verdict.runs:
        rows = {t["id"]: t for t in r.report["threads"]}
        assert rows[thread]["first_gap"] == {"expected": expected, "got": got}
        assert rows[thread]["missing"] == 1
        assert sum(t["missing"] for t in rows.values()) == 1


def test_blocked_sender_is_always_deadlock_within_stall_plus_one(local):
    verdict = run(local, inject="block-sender:1", repeat=3, stall=1.0)
    assert verdict.counts.get("deadlock") == 3, verdict.summary_line()
    for r in verdict.runs:
        rep = r.report
        assert rep["classified_by"] == "watchdog"
        assert 1.0 <= rep["stall"]["since_progress_s"] <= 2.0
        assert {t["id"]: t["state"] for t in rep["threads"]}[1] == "send"
        stacks = "\n".join(rep["stall"]["stacks"].values())
        assert "inject" in stacks and "fault_hold" in stacks


def test_duplicate_and_swap_are_misordered(local):
    assert run(local, inject="dup:5").worst == "misordered"
    verdict = run(local, inject="swap:9")
    assert verdict.worst == "misordered"
    assert verdict.runs[0].report["totals"]["reorders"] == 1


def test_exception_in_a_sender_is_error(local):
    verdict = run(local, inject="raise:1")
    assert verdict.worst == "error" and "injected fault" in verdict.runs[0].report["error"]


def test_frozen_process_is_killed_and_classified_by_the_lab(local):
    backend, target = local
    cell = Cell(target.name, "pushpull", "inproc", threads=2, msgs=50)
    verdict = run_cell(backend, target, cell, RunSettings(repeat=1, stall=0.5, timeout=3,
                                                           extra=("--inject", "freeze")))
    rep = verdict.runs[0].report
    assert rep["outcome"] == "deadlock" and rep["classified_by"] == "lab"
    assert "hard timeout" in rep["reason"]
    assert 3.0 <= rep["duration_s"] < 5.0
    assert not backend.live


def test_poll_waits_as_the_originals_do(local):
    """--poll is the originals' zmq_poll(POLLIN, 1 ms) on the sending socket, after connect and
    (pushpull.cpp) after every send: nothing arrives there, so each poll waits its millisecond.
    A lower bound on the run time is the semantic check that it still waits (not a speed goal):
    2 threads x 500 pings in parallel need at least 500 x 1 ms. A POLLOUT poll returns at once."""
    verdict = run(local, "pushpull", "inproc", threads=2, msgs=500, poll=True)
    report = verdict.runs[0].report
    assert verdict.worst == "ok", verdict.summary_line()
    assert report["params"]["poll"] is True
    assert report["duration_s"] >= 0.45, report["duration_s"]


@pytest.mark.slow
def test_pair_deadlocks_with_sender_in_send_and_main_loop_in_poll(local):
    verdict = run(local, "pair", "inproc", threads=1, msgs=1000, repeat=3, stall=1.0)
    deadlocks = [r for r in verdict.runs if r.outcome == "deadlock"]
    assert deadlocks, verdict.summary_line()
    stacks = deadlocks[0].report["stall"]["stacks"]
    sender = next(v for k, v in stacks.items() if k.startswith("control-0"))
    main_loop = next(v for k, v in stacks.items() if k.startswith("main-loop"))
    assert "in send" in sender and "in poll" in main_loop


@pytest.mark.slow
def test_pubsub_loses_first_messages_on_tcp(local):
    verdict = run(local, "pubsub", "tcp", threads=20, msgs=200, repeat=3)
    lost = [r for r in verdict.runs if r.outcome == "lost"]
    assert lost, verdict.summary_line()
    gaps = [t["first_gap"] for r in lost for t in r.report["threads"] if t["first_gap"]]
    assert any(g["expected"] == 1 for g in gaps)


def test_sleep_longer_than_the_stall_window_is_not_a_stall(local):
    backend, target = local
    cell = Cell(target.name, "pushpull", "inproc", threads=2, msgs=20)
    verdict = run_cell(backend, target, cell, RunSettings(repeat=1, stall=0.5, sleep=1.5))
    assert verdict.worst == "ok", verdict.summary_line()
    assert verdict.runs[0].report["duration_s"] >= 1.5


def test_nowait_refusals_are_counted_apart_from_losses(local):
    """PAIR with --nowait: sends refused with EAGAIN never entered the transport; every
    accepted ping is either received or missing, nothing is counted twice."""
    verdict = run(local, "pair", "tcp", threads=2, msgs=20, repeat=3, nowait=True)
    for r in verdict.runs:
        rows = r.report["threads"]
        assert sum(t["would_block"] for t in rows) > 0
        for t in rows:
            if t["state"] == "done":
                assert t["received"] + t["missing"] + t["would_block"] == t["completed"], t
        assert r.outcome != "lost" or sum(t["missing"] for t in rows) or not r.report["shutdown_received"]


def test_the_ping_log_lists_the_refused_seqs_so_a_fault_verdict_never_calls_them_lost(local):
    verdict = run(local, "pair", "tcp", threads=2, msgs=20, repeat=3, nowait=True, extra_flags=("--ping-log",))
    seen = 0
    for r in verdict.runs:
        rows = {t["id"]: t for t in r.report["threads"]}
        for t in r.report["pings"]["threads"]:
            refused = t.get("refused", [])
            assert len(refused) == rows[t["id"]]["would_block"], (t, rows[t["id"]])
            assert all(t["recv_ns"][q - 1] is None for q in refused)    # never sent: never received
            seen += len(refused)
    assert seen > 0


def test_clientserver_on_stock_wheel_is_unsupported_with_reason(local):
    verdict = run(local, "clientserver", repeat=3)
    assert verdict.worst == "unsupported" and verdict.n == 1
    assert "draft" in verdict.runs[0].reason


def test_ipc_files_are_removed_even_after_a_watchdog_exit(local, tmp_path):
    backend, target = local
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    for extra in ([], ["--inject", "block-sender"]):
        proc = subprocess.run([str(backend.python(target)), "-m", "scenarios", "--pattern", "pushpull",
                               "--transport", "ipc", "--threads", "3", "--msgs", "50", "--stall", "0.5",
                               "--quiet", *extra], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout.startswith("{")
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,message", [(["--pattern", "nope"], "invalid choice"),
                                          (["--pattern", "pair", "--threads", "0"], "--threads must be at least 1"),
                                          (["--pattern", "pair", "--msgs", "-1"], "--msgs must be at least 1"),
                                          (["--pattern", "pair", "--inject", "drop:9999"], "outside"),
                                          (["--pattern", "pair", "--rate", "0.2"], "1 / --rate")])
def test_bad_flags_are_refused_in_one_line(local, argv, message):
    backend, target = local
    proc = subprocess.run([str(backend.python(target)), "-m", "scenarios", *argv],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_a_reader_that_went_away_does_not_keep_the_scenario_alive(local):
    """`python -m scenarios ... | true`: the report meets a closed pipe (EPIPE); the harness
    must still end (it used to hang holding its emit lock)."""
    backend, target = local
    for extra in ([], ["--inject", "block-sender"]):       # a normal end, and the watchdog's
        proc = subprocess.Popen([str(backend.python(target)), "-m", "scenarios", "--pattern", "pushpull",
                                 "--threads", "2", "--msgs", "50", "--stall", "0.5", "--sleep", "0", *extra],
                                env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        proc.stdout.close()                                 # the reader is gone before the report
        assert proc.wait(timeout=30) == 0


PUB_BINDS = ["--pattern", "pubsub", "--transport", "tcp", "--topology", "containers", "--variant", "pub-binds",
             "--threads", "4"]


@pytest.mark.parametrize("argv, says", [
    (["--pattern", "pubsub", "--transport", "tcp", "--variant", "pub-binds"], "needs --topology containers and --role"),
    (PUB_BINDS + ["--role", "receiver"], "needs --sender-at tcp://HOST:PORT"),
    (PUB_BINDS + ["--role", "sender", "--connect", "tcp://a:1", "--report", "tcp://a:2"], "needs --sender-bind"),
    (PUB_BINDS + ["--role", "receiver", "--sender-at", "tcp://tx:65533"], "at most 65535"),
    (PUB_BINDS + ["--role", "receiver", "--sender-at", "tx:20000"], "needs --sender-at"),
    (["--pattern", "pushpull", "--transport", "tcp", "--topology", "containers", "--role", "receiver",
      "--sender-at", "tcp://tx:1"], "are for --variant pub-binds"),
])
def test_the_pub_binds_layout_needs_each_sides_address(argv, says):
    from scenarios import flags
    with pytest.raises(flags.FlagError, match=says):
        flags.parse(argv)


def test_the_pub_binds_layout_parses_with_its_addresses():
    from scenarios import flags
    args = flags.parse(PUB_BINDS + ["--role", "receiver", "--sender-at", "tcp://tx:20000"])
    assert (args.variant, args.sender_at, args.sender_bind) == ("pub-binds", "tcp://tx:20000", None)
