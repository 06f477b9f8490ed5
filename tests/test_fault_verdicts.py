"""lab/fault_verdicts.py on constructed run reports: window split, grace, recovery, explain()."""
import json

import pytest

from lab import fault_verdicts as fv

MS = 1_000_000
T0 = 1_700_000_000_000_000_000      # a receiver clock reading, ns


def ns(ms):
    return None if ms is None else T0 + int(ms * MS)


def thread(tid, sent_ms, recv_ms, incarnation=None):
    t = {"id": tid, "sent_ns": [ns(s) for s in sent_ms], "recv_ns": [ns(r) for r in recv_ms]}
    if incarnation is not None:
        t["incarnation"] = incarnation
    return t


def report(threads, faults, stall=2.0, outcome="lost", heartbeat=None, stacks=None):
    params = {"pattern": "pushpull", "stall": stall}
    if heartbeat is not None:
        params["heartbeat"] = heartbeat
    return {"params": params, "outcome": outcome, "timeline": {"t0_ns": T0},
            "stall": {"since_progress_s": stall, "stacks": stacks} if stacks else None,
            "faults": [dict({"kind": "partition", "target": "receiver", "undone": True, "error": None}, **f,
                            start_ns=ns(f["start_ms"]), end_ns=ns(f.get("end_ms"))) for f in faults],
            "pings": {"clock": "receiver", "threads": threads}}


def window(start_ms=1000, end_ms=2000, **kw):
    return dict(start_ms=start_ms, end_ms=end_ms, **kw)


def test_no_faults_gives_none():
    assert fv.analyse(report([thread(0, [10], [11])], [])) is None
    assert fv.analyse({"outcome": "ok"}) is None


def test_inside_outside_boundaries_with_the_50ms_floor():
    # delivered pings before the fault: latency 0.1 ms -> grace is the 50 ms floor
    sent = [100, 949.999, 950, 2050, 2050.001, 2500]
    recv = [100.1, None, None, None, None, None]
    out = fv.analyse(report([thread(0, sent, recv)], [window()]))
    assert out.grace_ms == 50.0
    w = out.windows[0]
    assert w.lost_inside == 2 and w.lost_inside_by_thread == (("0", ((3, 4),)),)
    assert out.lost_outside == 3
    assert out.lost_outside_by_thread == (("0", ((2, 2), (5, 6))),)
    assert out.lost_join == 0


def test_grace_grows_with_the_measured_latency():
    # pre-fault pings took 30 ms: grace 120 ms, so a loss 100 ms after the heal is still inside
    sent = [0, 10, 20, 2100]
    recv = [30, 40, 50, None]
    out = fv.analyse(report([thread(0, sent, recv)], [window()]))
    assert out.latency_ms == pytest.approx(30.0)
    assert out.grace_ms == pytest.approx(120.0)
    assert out.windows[0].lost_inside == 1 and out.lost_outside == 0
    fast = fv.analyse(report([thread(0, sent, [0.5, 10.5, 20.5, None])], [window()]))
    assert fast.windows[0].lost_inside == 0 and fast.lost_outside == 1


def test_late_deliveries_are_counted_apart_and_not_lost():
    sent = [500, 1200, 1300, 1500, 2600]
    recv = [500.2, 1300.5, 2010, 2011, 2600.2]     # #2 arrived while the fault lasted: not late
    out = fv.analyse(report([thread(0, sent, recv)], [window()]))
    w = out.windows[0]
    assert w.late == 2 and w.lost_inside == 0 and out.lost_outside == 0
    assert w.delivered_during == 1
    assert "2 sent inside delivered late" in out.explain()


def test_loss_before_a_threads_first_delivery_is_join_loss():
    sent = [1, 2, 3, 4, 3000]
    recv = [None, None, 3.2, 4.1, None]
    out = fv.analyse(report([thread(0, sent, recv)], [window()]))
    assert out.lost_join == 2 and out.lost_outside == 1
    assert "2 before their thread's first delivery" in out.explain()


def test_recovery_per_thread_and_worst():
    t1 = thread(1, [500, 1500, 2100, 2300], [500.1, None, 2100.1, 2300.1])   # first after heal +100.1
    t4 = thread(4, [500, 1500, 2100, 2300], [500.1, None, None, 2212])       # first after heal +212
    done = thread(5, [100, 200], [100.1, 200.1])                            # finished before the fault
    out = fv.analyse(report([t1, t4, done], [window()]))
    w = out.windows[0]
    assert dict(w.recovery_ms) == {"1": pytest.approx(100.1), "4": pytest.approx(212.0)}
    assert w.worst_thread == "4" and w.worst_recovery_ms == pytest.approx(212.0)
    assert w.never_recovered == ()


def test_pending_thread_with_nothing_after_the_heal_never_recovers():
    stuck = thread(2, [500, 1500, None, None], [500.1, None, None, None])    # pings left, none sent
    slow = thread(3, [500, 2500], [500.1, 4100])                            # +2.1 s > 2.0 s stall
    ok = thread(4, [500, 2100], [500.1, 2100.1])
    stacks = {"sender: thread 2": "File ...", "main": "File ..."}
    out = fv.analyse(report([stuck, slow, ok], [window()], stacks=stacks, outcome="deadlock"))
    w = out.windows[0]
    assert w.never_recovered == ("2", "3")
    assert dict(w.recovery_ms) == {"4": pytest.approx(100.1)}
    assert out.stacks == ("main", "sender: thread 2")
    text = out.explain()
    assert "threads 2, 3 never recovered within the 2.0 s stall window" in text
    assert "stacks in report.stall.stacks" in text


def test_kill_of_the_sender_recovers_to_the_next_incarnation():
    first = thread(0, [500, 900, 1100, None, None], [500.1, 900.1, None, None, None])
    second = thread(0, [2100, 2200], [2300, 2300.5], incarnation=2)
    kill = window(kind="kill", target="sender")
    out = fv.analyse(report([first, second], [kill]))
    w = out.windows[0]
    assert dict(w.recovery_ms) == {"0/2": pytest.approx(300.0)}
    assert w.lost_inside == 1 and w.lost_inside_by_thread == (("0", ((3, 3),)),)
    assert "(worst thread 0/2)" in out.explain()
    # no second incarnation in the report: the killed thread never came back
    alone = fv.analyse(report([first], [kill]))
    assert alone.windows[0].never_recovered == ("0",) and alone.windows[0].recovery_ms == ()


def test_a_req_stuck_on_a_request_the_killed_receiver_took_is_apart_from_one_stuck_after():
    # kill rx from 1000 ms, surely dead at 1120 ms (the kill's own ~100 ms), back at 2000 ms
    kill = window(kind="kill", target="receiver", effective_ns=ns(1120))
    before = thread(0, [500, 1100], [500.1, None])      # request #2 sent while the kill landed
    after = thread(1, [500, 1300, 2500], [500.1, 2100, None])   # #3 went to the restarted REP
    done = thread(2, [500, 1300], [500.1, 2100])
    rep = report([before, after, done], [kill], outcome="deadlock")
    rep["threads"] = [{"id": 0, "state": "wait-reply", "attempted": 2}, {"id": 1, "state": "wait-reply", "attempted": 3},
                      {"id": 2, "state": "done", "attempted": 2}]
    out = fv.analyse(rep)
    assert out.windows[0].waiting_at_fault == ("0",) and out.windows[0].hung_after == ("1",)
    text = out.explain()
    assert "waiting for a reply since before the fault: thread 0" in text
    assert "request sent after the fault struck: thread 1" in text
    rep["faults"][0].pop("effective_ns")                # without it: the start, plus the 50 ms grace
    assert fv.analyse(rep).windows[0].hung_after == ("0", "1")


def test_recovery_and_late_count_from_when_undoing_began():
    # an unpause that took 400 ms to return: the backlog came at 2100 ms, before it did
    t = thread(0, [500, 1500, 1600], [500.1, 2100, 2101])
    slow = window(end_ms=2450, lifting_ns=ns(2000))
    w = fv.analyse(report([t], [slow])).windows[0]
    assert dict(w.recovery_ms) == {"0": pytest.approx(100.0)} and w.late == 2
    without = fv.analyse(report([t], [window(end_ms=2450)])).windows[0]
    assert without.late == 0 and without.never_recovered == ("0",)    # measured from the end: nothing after it


def test_a_fault_over_before_the_first_ping_is_not_applied():
    early = report([thread(0, [2500, 2600], [2500.1, 2600.1])], [window(start_ms=500, end_ms=2000)])
    assert fv.judged(early)["judged"] == "not-applied"
    assert "over before the first ping" in fv.judged(early)["why"]
    during = report([thread(0, [1500, 2600], [1500.1, 2600.1])], [window(start_ms=500, end_ms=2000)])
    assert fv.judged(during)["judged"] != "not-applied"


def test_loss_while_a_threads_own_backlog_still_drains_is_the_faults():
    # pause 1000–2000 ms; thread 0's backlog (sent inside, #2) came at 2200 ms: #3 sent at
    # 2100 ms (after end + the 50 ms grace) was dropped by a queue still in its mute state,
    # #4 sent at 2300 ms, after the drain, was not the fault's
    t = thread(0, [500, 1500, 2100, 2300], [500.1, 2200, None, None])
    other = thread(1, [500, 2100], [500.1, None])        # no backlog of its own: the grace only
    out = fv.analyse(report([t, other], [window()]))
    assert out.windows[0].lost_inside_by_thread == (("0", ((3, 3),)),)
    assert dict(out.lost_outside_by_thread) == {"0": ((4, 4),), "1": ((2, 2),)}


def test_window_never_undone_has_no_recovery():
    t = thread(0, [500, 1500, 2500], [500.1, None, None])
    out = fv.analyse(report([t], [window(end_ms=None, undone=False, error="sidecar gone")]))
    w = out.windows[0]
    assert w.lost_inside == 2 and w.recovery_ms == () and w.never_recovered == ()
    text = out.explain()
    assert "from 1.00 s, never undone" in text and "fault error: sidecar gone" in text


def test_explain_wording():
    # thread 2: #1-#40 delivered before the fault, #41-#43 sent inside and lost, #44 after the heal
    sent = [1000 + i for i in range(40)] + [1600, 1601, 1602, 3600]
    recv = [1000.1 + i for i in range(40)] + [None, None, None, 3600.2]
    t4 = thread(4, [1000, 3500, 3712], [1000.1, None, 3712])
    out = fv.analyse(report([thread(2, sent, recv), t4], [window(1500, 3500)], heartbeat=False))
    assert out.explain() == ("partition rx 1.50–3.50 s: 0 lost outside, 4 lost inside "
                             "(thread 2: #41–#43; thread 4: #2), recovered after 212 ms (worst thread 4); "
                             "heartbeats off")


def test_to_dict_is_json_and_carries_the_run_outcome():
    out = fv.analyse(report([thread(0, [500, 1500], [500.1, None])], [window()], outcome="lost"))
    d = json.loads(json.dumps(out.to_dict()))
    assert d["run_outcome"] == "lost" and d["windows"][0]["lost_inside"] == 1
    assert d["windows"][0]["kind"] == "partition"


def test_seq_ranges():
    assert fv.seq_ranges([7, 1, 2, 3, 9, 10]) == ((1, 3), (7, 7), (9, 10))
    assert fv.seq_ranges([]) == ()


# ---------------------------------------------------------------- judged(): the run's fault block

def _partition_run(lost_inside, outcome="lost", sockopts=None, libzmq="4.3.4"):
    """pushpull, a 1-2 s receiver partition; thread 0 loses `lost_inside` pings sent inside."""
    sent = [500, 1500, 1600, 2500]
    recv = [501, None if lost_inside else 2600, None if lost_inside > 1 else 2610, 2501]
    r = report([thread(0, sent, recv)], [window()], outcome=outcome)
    r["params"] = {"pattern": "pushpull", "stall": 5.0, "ping_log": True}
    if sockopts:
        r["params"]["sockopts"] = sockopts
    r["versions"] = {"libzmq": libzmq}
    return r


def test_judged_holds_the_outcome_against_the_sourced_promise():
    block = fv.judged(_partition_run(2))
    assert block["outcome"]["lost_inside"] == 2 and block["explain"].startswith("partition rx")
    promise = block["expectation"]
    assert promise["source_url"].startswith("https://") and promise["fault_kind"] == "partition"
    assert block["judged"] in ("expected", "unexpected") and block["why"]


def test_judged_without_faults_is_none_and_an_unapplied_fault_says_so():
    assert fv.judged({"outcome": "ok"}) is None
    r = _partition_run(0)
    r["faults"] = [{"kind": "pause", "target": "receiver", "label": "pause:rx@1+1", "start_ns": None,
                    "end_ns": None, "undone": True, "error": "the run ended before the fault's time"}]
    block = fv.judged(r)
    assert block["judged"] == "not-applied" and "ended before" in block["why"]


def test_option_names_and_mixed_versions():
    assert fv.option_names({"heartbeat": [100, 300], "immediate": True, "hwm": None}) == {"heartbeat", "immediate"}
    r = {"versions": {"libzmq": "4.3.5"}, "peers": [{"role": "sender", "versions": {"libzmq": "4.1.6"}}]}
    assert fv.libzmq_of(r) == "4.1.6->4.3.5"
    r["peers"][0]["versions"]["libzmq"] = "4.3.5"
    assert fv.libzmq_of(r) == "4.3.5"


def test_heartbeats_are_read_from_the_harness_params():
    r = _partition_run(1, sockopts={"heartbeat": [100, 300]})
    assert fv.heartbeat_of(r) is True
    assert fv.heartbeat_of(_partition_run(1)) is False


def test_a_lost_seq_before_the_first_delivered_one_is_join_loss_even_with_an_upper_bound_send_time():
    # a killed incarnation's lost #1 carries #2's send time (an upper bound): by seq it still
    # came before the thread's first delivery (measured: pubsub kill tx called it 'outside')
    r = report([thread(0, [100, 100, 200], [None, 101, 201])], [window(start_ms=1000, end_ms=1500)])
    out = fv.analyse(r)
    assert (out.lost_join, out.lost_outside) == (1, 0)


def test_every_judgement_judged_gives_is_one_the_baseline_counts():
    early = report([thread(0, [2500], [2500.1])], [window(start_ms=500, end_ms=2000)])
    ok = report([thread(0, [500, 1500], [500.1, 1600])], [window()], outcome="ok")
    seen = {fv.judged(early)["judged"], fv.judged(ok)["judged"]}
    ok["faults"][0]["kind"] = "pause"
    seen.add(fv.judged(ok)["judged"])
    ok["params"]["pattern"] = "pair"                    # no source speaks to PAIR under a pause
    seen.add(fv.judged(ok)["judged"])
    assert seen <= set(fv.JUDGEMENTS) and {"not-applied", "no-promise", "expected"} <= seen
