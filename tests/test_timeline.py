"""scenarios/timeline.py: the timeline's one-line explanations and its unseen events, on
hand-written timelines shaped as docs/topology.md specifies them."""
import ast
import copy
import re
from pathlib import Path

import pytest

from scenarios import timeline as tl
from scenarios.timeline import event_name, explain, unseen

SOURCE = Path(tl.__file__)


def sends(start, step=0.25, n=64):
    """send_ms of seqs 1..n: one ping every `step` ms from `start` (a paced sender)."""
    return [round(start + step * i, 3) for i in range(n)]


def ev(t, thread, event, side="sender", endpoint="tcp://127.0.0.1:40123"):
    return {"t_ms": t, "side": side, "thread": thread, "event": event, "endpoint": endpoint, "value": 0}


def thread(tid, connect, first_send, last_send, first_recv=None, first_seq=None, last_recv=None, step=0.25):
    return {"id": tid, "connect_ms": connect, "first_send_ms": first_send, "last_send_ms": last_send,
            "send_ms": sends(first_send, step), "first_recv_ms": first_recv,
            "first_recv_seq": first_seq, "last_recv_ms": last_recv}


def row(tid, completed=200, received=200, gap=None):
    return {"id": tid, "attempted": completed, "completed": completed, "received": received,
            "missing": completed - received, "duplicates": 0, "reorders": 0, "first_gap": gap,
            "state": "done", "would_block": 0}


# PUB/SUB over tcp on libzmq 4.3: each sender PUB connects, then sends 200 pings every 0.25 ms.
#   thread 0: handshake before its first send, everything arrived
#   thread 1: #1-#16 sent while its handshake was still under way; first received #17
#   thread 2: handshake done at 1.9, first send at 3.9: #1-#5 lost to the subscription in flight
#   thread 3: nothing arrived at all
PUBSUB_TCP = {
    "clock": "CLOCK_REALTIME, ms since t0 (the receiver's bind)", "t0_ns": 1_764_000_000_000_000_000,
    "align": None, "monitor": "on", "collector_delay_ms": 0.02,
    "threads": [
        thread(0, 1.0, 5.0, 54.75, 5.2, 1, 55.0),
        thread(1, 1.1, 1.2, 50.95, 5.4, 17, 51.1),
        thread(2, 1.0, 3.9, 53.65, 5.3, 6, 53.8),
        thread(3, 1.2, 1.3, 51.05),
    ],
    "events": [
        ev(0.1, None, "LISTENING", side="receiver"),
        ev(1.4, 0, "CONNECTED"), ev(1.8, 0, "HANDSHAKE_SUCCEEDED"),
        ev(1.6, 1, "CONNECTED"), ev(5.1, 1, "HANDSHAKE_SUCCEEDED"),
        ev(1.5, 2, "CONNECTED"), ev(1.9, 2, "HANDSHAKE_SUCCEEDED"),
        ev(1.7, 3, "CONNECTED"), ev(3.2, 3, "HANDSHAKE_SUCCEEDED"),
        ev(1.5, None, "ACCEPTED", side="receiver"), ev(1.9, None, "HANDSHAKE_SUCCEEDED", side="receiver"),
        ev(56.0, 0, "DISCONNECTED"), ev(56.1, 0, "CLOSED"),
    ],
    "unseen": [],
}
PUBSUB_ROWS = [row(0), row(1, received=184, gap={"expected": 1, "got": 17}),
               row(2, received=195, gap={"expected": 1, "got": 6}),
               row(3, received=0, gap={"expected": 1, "got": None})]


def without_events(timeline, *names):
    out = copy.deepcopy(timeline)
    out["events"] = [e for e in out["events"] if e["event"] not in names]
    return out


# ---- event names ------------------------------------------------------------------------------

def test_event_numbers_are_zmq_h_s():
    assert tl.EVENTS == {
        0x1: "CONNECTED", 0x2: "CONNECT_DELAYED", 0x4: "CONNECT_RETRIED", 0x8: "LISTENING",
        0x10: "BIND_FAILED", 0x20: "ACCEPTED", 0x40: "ACCEPT_FAILED", 0x80: "CLOSED",
        0x100: "CLOSE_FAILED", 0x200: "DISCONNECTED", 0x400: "MONITOR_STOPPED",
        0x800: "HANDSHAKE_FAILED_NO_DETAIL", 0x1000: "HANDSHAKE_SUCCEEDED",
        0x2000: "HANDSHAKE_FAILED_PROTOCOL", 0x4000: "HANDSHAKE_FAILED_AUTH", 0x10000: "PIPES_STATS"}


def test_event_name_of_numbers_names_and_strangers():
    assert event_name(0x1000) == "HANDSHAKE_SUCCEEDED" and event_name(512) == "DISCONNECTED"
    assert event_name("ACCEPTED") == "ACCEPTED"            # reports store names already
    assert event_name(0x8000) == "EVENT_0x8000"
    assert event_name(None) == "EVENT_None"


# ---- explain(): each wording ----------------------------------------------------------------

def lines_for(tid, timeline=PUBSUB_TCP, rows=PUBSUB_ROWS, **kw):
    return [ln for ln in explain(timeline, rows, limit=10, **kw) if ln.startswith("thread %d:" % tid)]


def test_pings_sent_before_the_handshake():
    assert lines_for(1, pattern="pubsub") == [
        "thread 1: #1–#16 sent before its handshake completed (+4.0 ms after connect); first received #17"]


def test_pings_lost_after_the_handshake_name_the_subscription_only_for_pubsub():
    assert lines_for(2, pattern="pubsub") == [
        "thread 2: #1–#5 lost although sent 2.0 ms after its handshake completed "
        "(the subscription had not reached the PUB yet); first received #6"]
    assert lines_for(2, pattern="pushpull") == [
        "thread 2: #1–#5 lost although sent 2.0 ms after its handshake completed; first received #6"]


def test_some_before_some_after():
    timeline = copy.deepcopy(PUBSUB_TCP)
    timeline["events"].append(ev(3.0, 1, "HANDSHAKE_SUCCEEDED"))   # earlier than the 5.1 one: first wins
    assert lines_for(1, timeline, pattern="pubsub") == [
        "thread 1: #1–#8 sent before its handshake completed (+1.9 ms after connect), "
        "#9–#16 lost although sent 0.2 ms after its handshake completed "
        "(the subscription had not reached the PUB yet); first received #17"]


def test_only_the_sender_side_s_handshake_counts():
    timeline = copy.deepcopy(PUBSUB_TCP)
    timeline["events"].append(ev(0.5, 1, "HANDSHAKE_SUCCEEDED", side="receiver"))
    assert lines_for(1, timeline) == lines_for(1)


def test_nothing_arrived():
    assert lines_for(3) == ["thread 3: none of #1–#200 arrived (all sent by +49.8 ms); handshake at +2.0 ms"]


def test_without_handshake_events_the_connection_counts():
    # libzmq 4.2.5: no HANDSHAKE_SUCCEEDED, only CONNECTED
    old = without_events(PUBSUB_TCP, "HANDSHAKE_SUCCEEDED")
    assert lines_for(1, old) == [
        "thread 1: #1–#2 sent before it connected (+0.5 ms after connect), "
        "#3–#16 lost although sent 0.1 ms after it connected; first received #17"]
    assert lines_for(3, old) == ["thread 3: none of #1–#200 arrived (all sent by +49.8 ms); connected at +0.5 ms"]


def test_without_any_connection_event():
    inproc = without_events(PUBSUB_TCP, "HANDSHAKE_SUCCEEDED", "CONNECTED")
    assert lines_for(1, inproc, transport="inproc") == [
        "thread 1: #1–#16 lost, no connection event recorded (inproc has none); first received #17"]
    assert lines_for(3, inproc, transport="inproc") == [
        "thread 3: none of #1–#200 arrived (all sent by +49.8 ms); no connection event recorded (inproc has none)"]
    assert lines_for(1, inproc, transport="tcp") == [
        "thread 1: #1–#16 lost, no connection event recorded; first received #17"]
    off = dict(inproc, monitor="off")
    assert lines_for(1, off, transport="tcp") == [
        "thread 1: #1–#16 lost, no connection event recorded (monitor off); first received #17"]


def test_only_threads_that_lost_their_first_pings():
    rows = [row(0), row(1, received=190, gap={"expected": 40, "got": 51}),      # lost in the middle
            row(2, received=190, gap={"expected": 191, "got": None})]           # lost its tail
    assert explain(PUBSUB_TCP, rows) == []


# ---- explain(): a monitor that stamps late --------------------------------------------------

def late(timeline, **lags):
    return dict(copy.deepcopy(timeline), **lags)


def test_sends_within_the_stamps_lateness_are_not_ordered():
    # thread 1's handshake stamped at 5.1, up to 1.0 ms late: it happened in [4.1, 5.1]
    assert lines_for(1, late(PUBSUB_TCP, monitor_lag_ms=1.0)) == [
        "thread 1: #1–#12 sent before its handshake completed (+4.0 ms after connect, stamped up to 1.0 ms late), "
        "#13–#16 sent too close to its handshake to tell which came first; first received #17"]
    # pings sent after the stamp are after the handshake whatever the lag
    assert lines_for(2, late(PUBSUB_TCP, monitor_lag_ms=1.0)) == [
        "thread 2: #1–#5 lost although sent 2.0 ms after its handshake completed; first received #6"]


def test_the_larger_of_the_two_lateness_figures_counts():
    measured = lines_for(1, late(PUBSUB_TCP, collector_delay_ms=0.2, monitor_lag_ms=1.0))
    assert measured == lines_for(1, late(PUBSUB_TCP, collector_delay_ms=1.0, monitor_lag_ms=None))
    assert "stamped up to 1.0 ms late" in measured[0]


def test_a_lag_longer_than_the_sending_leaves_nothing_ordered():
    # what a busy 10-thread run really looks like: the collector woke 22 ms after the connects
    lagged = late(PUBSUB_TCP, monitor_lag_ms=22.5)
    assert lines_for(1, lagged) == [
        "thread 1: #1–#16 sent too close to its handshake to tell which came first "
        "(+4.0 ms after connect, stamped up to 22.5 ms late); first received #17"]
    assert lines_for(3, lagged) == [
        "thread 3: none of #1–#200 arrived (all sent by +49.8 ms); handshake at +2.0 ms (stamped up to 22.5 ms late)"]


def test_seqs_past_the_64_kept_within_the_lag_are_too_close():
    timeline = {"monitor": "on", "monitor_lag_ms": 5.0,
                "threads": [dict(thread(5, 1.0, 1.1, 1.9, 2.6, 101, 4.0, step=0.01))],
                "events": [ev(2.5, 5, "HANDSHAKE_SUCCEEDED")]}
    rows = [row(5, completed=150, received=50, gap={"expected": 1, "got": 101})]
    assert explain(timeline, rows) == [
        "thread 5: #1–#100 sent too close to its handshake to tell which came first "
        "(+1.5 ms after connect, stamped up to 5.0 ms late); first received #101"]


# ---- explain(): missing data ------------------------------------------------------------------

def test_no_send_times():
    timeline = copy.deepcopy(PUBSUB_TCP)
    for t in timeline["threads"]:
        t["send_ms"], t["last_send_ms"] = [], None
    assert lines_for(1, timeline) == [
        "thread 1: #1–#16 lost, send times not recorded (handshake +4.0 ms after connect); first received #17"]


def test_no_send_times_but_an_early_last_send():
    timeline = copy.deepcopy(PUBSUB_TCP)
    timeline["threads"][1].update(send_ms=[], last_send_ms=4.0)      # everything out before 5.1
    assert lines_for(1, timeline) == [
        "thread 1: #1–#16 sent before its handshake completed (+4.0 ms after connect); first received #17"]


def test_no_connect_time_counts_from_t0():
    timeline = copy.deepcopy(PUBSUB_TCP)
    timeline["threads"][1]["connect_ms"] = None
    assert lines_for(1, timeline) == [
        "thread 1: #1–#16 sent before its handshake completed (at 5.1 ms since t0); first received #17"]


def test_seqs_past_the_64_kept_follow_from_the_last_send():
    # a fast sender: all 100 lost pings out within 1 ms, the handshake after the last send
    timeline = {"monitor": "on", "threads": [
        dict(thread(5, 1.0, 1.1, 1.9, 2.6, 101, 4.0, step=0.01))], "events": [ev(2.5, 5, "HANDSHAKE_SUCCEEDED")]}
    rows = [row(5, completed=150, received=50, gap={"expected": 1, "got": 101})]
    assert explain(timeline, rows) == [
        "thread 5: #1–#100 sent before its handshake completed (+1.5 ms after connect); first received #101"]
    # the 64th send already after the handshake: the rest were too
    timeline["events"] = [ev(1.3, 5, "HANDSHAKE_SUCCEEDED")]
    assert explain(timeline, rows) == [
        "thread 5: #1–#20 sent before its handshake completed (+0.3 ms after connect), "
        "#21–#100 lost although sent <0.1 ms after its handshake completed; first received #101"]


def test_seqs_past_the_64_kept_without_a_last_send_are_unknown():
    timeline = {"monitor": "on", "threads": [dict(thread(5, 1.0, 1.1, None, step=0.01))],
                "events": [ev(2.5, 5, "HANDSHAKE_SUCCEEDED")]}
    rows = [row(5, completed=150, received=50, gap={"expected": 1, "got": 101})]
    assert explain(timeline, rows) == [
        "thread 5: #1–#64 sent before its handshake completed (+1.5 ms after connect), "
        "#65–#100 lost, send times not recorded; first received #101"]


NO_THREADS = [None, [], "timeline", {}, {"threads": None}, {"threads": "x", "events": 3},
              {"threads": [None, 5, {"id": "7"}, {}]}]
BROKEN = [
    {"threads": [{"id": 1, "send_ms": "abc", "connect_ms": "x", "last_send_ms": float("nan")}],
     "events": [None, 4, {"t_ms": "soon", "side": "sender", "thread": 1, "event": "CONNECTED"},
                {"side": "sender", "thread": 1, "event": 0x1000}]},
    {"threads": [{"id": 1, "send_ms": [None, True, "1"], "connect_ms": None}],
     "events": [{"t_ms": 2.0, "side": "sender", "thread": 1, "event": 4096}], "monitor": None},
    {"threads": [{"id": 1}], "events": [{"t_ms": 2.0, "side": "sender", "thread": 1, "event": []}]},
]
BROKEN_ROWS = [None, 3, {}, {"id": 1}, {"id": 1, "received": 0, "completed": "5"},
               {"id": 1, "first_gap": "x"}, {"id": 1, "first_gap": {"expected": 1, "got": "2"}},
               {"id": 1, "received": 0, "completed": 5, "first_gap": None},
               {"id": 1, "received": 4, "completed": 10, "first_gap": {"expected": 1, "got": 7}}]


@pytest.mark.parametrize("timeline", NO_THREADS, ids=range(len(NO_THREADS)))
def test_explain_without_thread_times_is_empty(timeline):
    assert explain(timeline, PUBSUB_ROWS, pattern="pubsub", transport="tcp") == []


@pytest.mark.parametrize("timeline", BROKEN, ids=range(len(BROKEN)))
def test_explain_never_raises_on_broken_parts(timeline):
    out = explain(timeline, BROKEN_ROWS, pattern="pubsub", transport="tcp")
    # the two rows that did lose their first pings are still explained, as far as possible
    assert len(out) == 2 and all(ln.startswith("thread 1: ") for ln in out)


def test_a_timeline_lacking_its_parts_explains_nothing():
    assert explain({"monitor": "on", "events": PUBSUB_TCP["events"]}, PUBSUB_ROWS) == []
    assert explain(PUBSUB_TCP, []) == [] and explain(PUBSUB_TCP, None) == []


def test_typed_event_numbers_count_like_names():
    timeline = copy.deepcopy(PUBSUB_TCP)
    for e in timeline["events"]:
        e["event"] = {v: k for k, v in tl.EVENTS.items()}[e["event"]]
    assert explain(timeline, PUBSUB_ROWS, limit=10) == explain(PUBSUB_TCP, PUBSUB_ROWS, limit=10)


# ---- explain(): ordering, limit, determinism -------------------------------------------------

def many_lost():
    """Six threads that lost 3, 9, 9, 1, 30, 200 (all) of their first pings."""
    lost = {0: 3, 1: 9, 2: 9, 3: 1, 4: 30}
    threads = [thread(i, 1.0, 1.1, 60.0, 2.0, n + 1, 61.0) for i, n in lost.items()]
    threads.append(thread(5, 1.0, 1.1, 60.0))
    events = [ev(5.0, i, "HANDSHAKE_SUCCEEDED") for i in range(6)]
    rows = [row(i, received=200 - n, gap={"expected": 1, "got": n + 1}) for i, n in lost.items()]
    rows.append(row(5, received=0, gap={"expected": 1, "got": None}))
    return {"monitor": "on", "threads": threads, "events": events}, rows


def test_worst_first_ties_by_id_then_how_many_more():
    timeline, rows = many_lost()
    out = explain(timeline, rows)
    assert [ln.split(":")[0] for ln in out[:3]] == ["thread 5", "thread 4", "thread 1"]
    assert out[3] == "(+3 more threads)" and len(out) == 4
    assert [ln.split(":")[0] for ln in explain(timeline, rows, limit=10)] == [
        "thread 5", "thread 4", "thread 1", "thread 2", "thread 0", "thread 3"]
    assert explain(timeline, rows, limit=5)[-1] == "(+1 more thread)"
    assert explain(timeline, rows, limit=0) == ["(+6 more threads)"]


def test_deterministic_and_one_decimal_at_most():
    timeline, rows = many_lost()
    timeline["events"] += [ev(1.0 / 3, 4, "CONNECTED")]
    for t in timeline["threads"]:
        t["connect_ms"] = 1.0 / 7
    rows = list(reversed(rows))
    out = explain(timeline, rows, limit=10)
    assert out == explain(copy.deepcopy(timeline), list(reversed(rows)), limit=10)
    numbers = re.findall(r"\d+(?:\.\d+)?", " ".join(out))
    assert numbers and all(len(n.split(".")[1]) == 1 for n in numbers if "." in n)


def test_no_negative_zero():
    timeline = {"monitor": "on", "threads": [thread(1, 2.0, 1.96, 30.0, 3.0, 3, 31.0)],
                "events": [ev(1.98, 1, "HANDSHAKE_SUCCEEDED")]}      # a hair before connect_ms
    out = explain(timeline, [row(1, received=198, gap={"expected": 1, "got": 3})])
    assert out == ["thread 1: #1 sent before its handshake completed (+0.0 ms after connect), "
                   "#2 lost although sent 0.2 ms after its handshake completed; first received #3"]


# ---- unseen() ---------------------------------------------------------------------------------

def test_unseen_on_tcp_and_ipc():
    assert unseen(PUBSUB_TCP, "tcp") == []
    assert unseen(without_events(PUBSUB_TCP, "HANDSHAKE_SUCCEEDED"), "ipc") == ["HANDSHAKE_SUCCEEDED"]
    assert unseen(without_events(PUBSUB_TCP, "HANDSHAKE_SUCCEEDED", "CONNECTED"), "tcp") == [
        "CONNECTED", "HANDSHAKE_SUCCEEDED"]


def test_unseen_counts_only_sender_sockets():
    receiver_only = dict(PUBSUB_TCP, events=[e for e in PUBSUB_TCP["events"] if e["side"] == "receiver"])
    assert unseen(receiver_only, "tcp") == ["CONNECTED", "HANDSHAKE_SUCCEEDED"]


def test_nothing_is_unseen_where_nothing_could_be_seen():
    bare = without_events(PUBSUB_TCP, "HANDSHAKE_SUCCEEDED", "CONNECTED")
    assert unseen(bare, "inproc") == []
    assert unseen(dict(bare, monitor="off"), "tcp") == []
    assert unseen(dict(bare, threads=[]), "tcp") == []
    assert unseen({}, "tcp") == [] and unseen(None, "tcp") == []


# ---- the module itself ---------------------------------------------------------------------

def test_standard_library_only_and_python_3_9_syntax():
    tree = ast.parse(SOURCE.read_text(), feature_version=(3, 9))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__"}


def test_the_fixtures_are_timelines_a_run_report_may_carry():
    from factories import make_cell, make_report
    from lab import schemas
    report = make_report("lost", make_cell(pattern="pubsub", threads=4, msgs=200), lost_threads=(1,))
    report.update(timeline=PUBSUB_TCP, explain=explain(PUBSUB_TCP, PUBSUB_ROWS, pattern="pubsub"))
    schemas.validate("run", report)
    many, _ = many_lost()
    schemas.validate("run", dict(report, timeline=dict(PUBSUB_TCP, threads=many["threads"], events=many["events"])))
