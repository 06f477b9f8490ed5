"""lab/expectations.py: every promise has its source, the lookup picks the right one, judge() both ways."""
import dataclasses

import pytest

from lab import expectations as ex
from lab import fault_verdicts as fv

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def test_every_expectation_has_an_https_source_a_quote_and_a_known_outcome():
    assert len(ex.EXPECTATIONS) >= 15
    for e in ex.EXPECTATIONS:
        assert e.source_url.startswith("https://") and len(e.source_url) > len("https://x.y/"), e
        assert e.quote.strip() and e.note.strip(), e
        assert e.expected in ex.EXPECTED, e
        assert isinstance(e.options, frozenset)
        # a promise of no loss is not a loss by design, and the other way round
        if e.expected == "no-loss":
            assert not e.by_design, e
        if e.expected in ("bounded-loss", "loss-in-window", "stall", "hang"):
            assert e.by_design, e
        assert e.to_dict()["options"] == sorted(e.options)


@pytest.mark.parametrize("args, scenario", [
    (("pubsub", "kill", "sender", (), "4.3.5"), "pub-kill-restart"),
    (("pubsub", "kill", "sender", (), "4.1.6"), "pub-kill-restart"),
    (("pubsub", "kill", "receiver", (), "4.3.5"), "sub-kill-restart"),
    (("pushpull", "partition", "receiver", (), "4.3.5"), "partition-no-heartbeat"),
    (("pubsub", "partition", "sender", (), "4.3.5"), "partition-no-heartbeat"),
    (("pushpull", "partition", "receiver", ("heartbeat",), "4.3.5"), "partition-heartbeat"),
    (("pushpull", "partition", "receiver", ("heartbeat",), "4.1.6"), "heartbeat-416"),
    (("pushpull", "kill", "receiver", (), "4.3.5"), "push-dead-peer"),
    (("routerdealer", "kill", "receiver", ("immediate",), "4.3.5"), "dealer-dead-peer"),
    (("pushpull", "reset", "sender", (), "4.3.1"), "reset-pushpull"),
    (("pubsub", "pause", "receiver", (), "4.3.5"), "pub-hwm-drop"),
    (("pubsub", "pause", "receiver", ("xpub-nodrop",), "4.3.5"), "xpub-nodrop"),
    (("reqrep", "kill", "receiver", (), "4.3.5"), "req-rep-killed"),
    (("pubsub", "kill", "sender", (), "4.1.6->4.3.5"), "mixed-pub-kill"),
    (("pubsub", "kill", "sender", (), "4.3.5->4.1.6"), "mixed-pub-kill"),
    (("pushpull", "pause", "receiver", (), "4.3.5"), "push-pause-short"),
    (("pushpull", "bandwidth", "receiver", (), "4.3.5"), "push-bandwidth"),
])
def test_each_scenario_of_the_issue_has_its_expectation(args, scenario):
    e = ex.expected_for(*args)
    assert e is not None and e.scenario_id == scenario


def test_the_most_specific_entry_wins_and_versions_pick_their_source():
    off = ex.expected_for("pushpull", "kill", "receiver", (), "4.3.5")
    on = ex.expected_for("pushpull", "kill", "receiver", ("immediate", "heartbeat"), "4.3.5")
    assert off.options == frozenset() and on.options == frozenset({"immediate"})
    assert "session_base.cpp" in on.source_url and "zmq_setsockopt" in off.source_url
    new = ex.expected_for("pubsub", "kill", "sender", (), "4.3.5")
    old = ex.expected_for("pubsub", "kill", "sender", (), "4.1.6")
    assert "/v4.3.5/" in new.source_url and "/v4.1.6/" in old.source_url
    mixed = ex.expected_for("pubsub", "kill", "sender", (), "4.1.6->4.3.5")
    assert mixed.libzmq == "4.1.6->4.3.5"
    # the same pin on both sides is not a mixed pair
    same = ex.expected_for("pubsub", "kill", "sender", (), "4.3.5->4.3.5")
    assert same.scenario_id == "pub-kill-restart"
    # heartbeats on a mixed pair with a 4.1.6 side: no source covers it, so no promise at all
    # (not the heartbeat-off one); an option no source mentions for the scenario changes nothing
    assert ex.expected_for("pushpull", "partition", "sender", ("heartbeat",), "4.1.6->4.3.5") is None
    assert ex.expected_for("pushpull", "reset", "sender", ("heartbeat",), "4.3.5").scenario_id == "reset-pushpull"


def test_no_source_no_expectation():
    assert ex.expected_for("pair", "reset", "receiver", (), "4.3.5") is None
    assert ex.expected_for("pushpull", "kill", "sender", (), "4.3.5") is None


def _outcome(lost_inside=0, lost_outside=0, lost_join=0, never=(), during=0, run="ok"):
    return {"lost_inside": lost_inside, "lost_outside": lost_outside, "lost_join": lost_join,
            "run_outcome": run,
            "windows": [{"never_recovered": list(never), "delivered_during": during, "lost_inside": lost_inside}]}


def _get(scenario, **kw):
    return next(e for e in ex.EXPECTATIONS if e.scenario_id == scenario
                and all(getattr(e, k) == v for k, v in kw.items()))


def test_judge_no_loss_both_ways():
    e = _get("push-pause-short")
    assert ex.judge(e, _outcome())[0] == "expected"
    verdict, reason = ex.judge(e, _outcome(lost_inside=3))
    assert verdict == "unexpected" and "3 lost inside" in reason
    assert ex.judge(e, _outcome(lost_join=1))[0] == "unexpected"     # PUSH has no slow joiner
    assert ex.judge(e, _outcome(), run_outcome="deadlock")[0] == "unexpected"


def test_judge_bounded_loss_both_ways():
    e = _get("reset-pushpull")
    assert ex.judge(e, _outcome(lost_inside=12, run="lost"))[0] == "expected"
    verdict, reason = ex.judge(e, _outcome(lost_inside=12, lost_outside=2, run="lost"))
    assert verdict == "unexpected" and "2 lost outside" in reason
    verdict, reason = ex.judge(e, _outcome(lost_inside=12, never=("3",), run="lost"))
    assert verdict == "unexpected" and "3 never recovered" in reason


def test_judge_forgives_slow_joiner_loss_on_pubsub_only():
    pub = _get("pub-kill-restart", libzmq=">=4.2")
    assert ex.judge(pub, _outcome(lost_inside=4, lost_join=7, run="lost"))[0] == "expected"
    push = _get("push-dead-peer", options=frozenset())
    assert ex.judge(push, _outcome(lost_inside=4, lost_join=7, run="lost"))[0] == "unexpected"


def test_judge_stall_hang_loss_in_window_unsupported_both_ways():
    stall = _get("partition-no-heartbeat", pattern="pushpull")
    assert ex.judge(stall, _outcome(during=0))[0] == "expected"
    assert ex.judge(stall, _outcome(during=5))[0] == "unexpected"
    drop = _get("pub-hwm-drop")
    assert ex.judge(drop, _outcome(lost_inside=300, run="lost"))[0] == "expected"
    assert ex.judge(drop, _outcome(lost_inside=300, lost_outside=1, run="lost"))[0] == "unexpected"
    missing = _get("heartbeat-416")
    assert ex.judge(missing, _outcome(run="unsupported"))[0] == "expected"
    assert ex.judge(missing, _outcome(run="ok"))[0] == "unexpected"
    assert ex.judge(drop, None)[0] == "unexpected"
    assert ex.judge(drop, _outcome(run="error"))[0] == "unexpected"


def _waiting(waiting=(), after=(), never=(), run="deadlock", outside=0):
    out = _outcome(never=never, run=run, lost_outside=outside)
    out["windows"][0].update(waiting_at_fault=list(waiting), hung_after=list(after))
    return out


def test_judge_a_req_hangs_only_if_its_request_was_out_when_the_rep_died():
    e = _get("req-rep-killed")
    assert e.expected == "hang-if-waiting" and e.by_design
    assert ex.judge(e, _waiting(waiting=("0", "1"), never=("0", "1")))[0] == "expected"
    assert ex.judge(e, _waiting(run="ok")) == ("expected", "no request was out when the fault struck: "
                                                          "every thread recovered")
    verdict, why = ex.judge(e, _waiting(waiting=("0",), after=("1",), never=("0", "1")))
    assert verdict == "unexpected" and "1 hung on a request sent after the fault" in why
    verdict, why = ex.judge(e, _waiting(waiting=("0",), never=("0", "2"), run="lost"))
    assert verdict == "unexpected" and "2 never recovered with no request out" in why
    assert ex.judge(e, _waiting(run="deadlock"))[0] == "unexpected"
    assert ex.judge(e, _waiting(waiting=("0",), never=("0",), outside=3))[0] == "unexpected"
    hang = dataclasses.replace(e, expected="hang")      # no source promises a plain hang today
    assert ex.judge(hang, _outcome(run="deadlock"))[0] == "expected"
    assert ex.judge(hang, _outcome(never=("0",), run="lost"))[0] == "expected"
    assert ex.judge(hang, _outcome(run="ok"))[0] == "unexpected"


def _reset_report(sent_ms, recv_ms):
    ns = lambda ms: None if ms is None else T0 + int(ms * MS)
    return {"params": {"stall": 2.0}, "outcome": "lost", "timeline": {"t0_ns": T0},
            "faults": [{"kind": "reset", "target": "receiver", "start_ns": ns(1000), "end_ns": ns(1100),
                        "undone": True, "error": None}],
            "pings": {"clock": "receiver", "threads": [
                {"id": 0, "sent_ns": [ns(s) for s in sent_ms], "recv_ns": [ns(r) for r in recv_ms]}]}}


def test_judge_a_real_fault_outcome():
    """fault_verdicts' own dict, end to end: a reset that lost 2 in flight and recovered in 80 ms."""
    e = ex.expected_for("pushpull", "reset", "receiver", (), "4.3.5")
    out = fv.analyse(_reset_report([500, 1010, 1020, 1180], [500.1, None, None, 1180.2])).to_dict()
    assert ex.judge(e, out) == ("expected", "2 lost inside the window, every thread recovered")
    # #2 lost long before the fault, after #1 had arrived: not the reset's doing
    worse = fv.analyse(_reset_report([300, 500, 1010, 1180], [300.1, None, None, 1180.2])).to_dict()
    verdict, reason = ex.judge(e, worse)
    assert verdict == "unexpected" and reason.startswith("1 lost outside")


def test_the_doc_lists_every_expectation_with_its_source():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "fault-expectations.md").read_text()
    for e in ex.EXPECTATIONS:
        assert "`%s`" % e.scenario_id in doc, e.scenario_id
        if e.scenario_id != "dealer-dead-peer" or e.options:       # its off entry says "as for PUSH"
            assert e.source_url in doc, e.source_url


def _nodrop_report(rows, thread1_recv, refused_lists=None):
    """A paused SUB (1.0–3.0 s) under pubsub --sync xpub with ZMQ_XPUB_NODROP and --nowait, as
    the run reports it. Thread 0 had #2–#4 refused at the mark: each has a send time (stamped
    before the call) and no receive time, so in the ping log they look lost. Thread 1 receives
    `thread1_recv`. `rows`: the evidence rows (would_block, missing) the harness reports."""
    ns = lambda ms: None if ms is None else T0 + int(ms * MS)
    sent = [ns(s) for s in (500, 1100, 1200, 1300, 3100)]
    report = {"params": {"stall": 6.0, "pattern": "pubsub", "sockopts": {"hwm": 10, "sndbuf": 4096, "rcvbuf": 4096,
                                                                          "xpub_nodrop": True}},
              "outcome": "ok", "timeline": {"t0_ns": T0}, "versions": {"libzmq": "4.3.5"},
              "faults": [{"kind": "pause", "target": "receiver", "start_ns": ns(1000), "end_ns": ns(3000),
                          "undone": True, "error": None}],
              "threads": rows,
              "pings": {"clock": "receiver", "threads": [
                  {"id": 0, "sent_ns": sent, "recv_ns": [ns(r) for r in (500.1, None, None, None, 3100.2)]},
                  {"id": 1, "sent_ns": sent, "recv_ns": [ns(r) for r in thread1_recv]}]}}
    for t, refused in zip(report["pings"]["threads"], refused_lists or ()):
        t["refused"] = refused
    return report


def test_refused_sends_under_nodrop_are_not_lost():
    """ZMQ_XPUB_NODROP with --nowait: EAGAIN at the mark is a refusal the run counts apart
    (outcome ok), so the fault's verdict must not call those seqs lost inside the window."""
    rows = [{"id": 0, "would_block": 3, "missing": 0}, {"id": 1, "would_block": 1, "missing": 0}]
    report = _nodrop_report(rows, (500.1, 3050, None, 3150, 3100.2))        # thread 1: #3 refused
    out = fv.analyse(report)
    assert (out.lost_inside, out.lost_outside, out.refused, out.refused_unplaced) == (0, 0, 4, 0)
    assert "4 refused with EAGAIN (not lost)" in out.explain()
    judged = fv.judged(report)
    assert judged["expectation"]["scenario_id"] == "xpub-nodrop"
    assert (judged["judged"], judged["why"]) == ("expected", "nothing lost")
    # the same seqs with no refusal on record are lost inside the window, as before
    lost = _nodrop_report([{"id": 0, "would_block": 0, "missing": 3}, {"id": 1, "would_block": 0, "missing": 1}],
                          (500.1, 3050, None, 3150, 3100.2))
    assert (fv.analyse(lost).lost_inside, fv.analyse(lost).refused) == (4, 0)
    assert fv.judged(lost)["judged"] == "unexpected"


def test_a_thread_with_refusals_and_losses_keeps_them_among_the_lost_unless_the_log_lists_them():
    rows = [{"id": 0, "would_block": 3, "missing": 0}, {"id": 1, "would_block": 1, "missing": 1}]
    recv1 = (500.1, 3050, None, None, 3100.2)          # thread 1: #3 refused, #4 lost (or the other way)
    out = fv.analyse(_nodrop_report(rows, recv1))
    # thread 0 exactly; thread 1's two unseen seqs cannot be told apart from its counts
    assert (out.lost_inside, out.refused, out.refused_unplaced) == (2, 3, 1)
    assert out.windows[0].lost_inside_by_thread == (("1", ((3, 4),)),)
    assert "1 refused among the lost" in out.explain()
    # a ping log that lists each thread's refused seqs settles it
    listed = fv.analyse(_nodrop_report(rows, recv1, refused_lists=[[2, 3, 4], [3]]))
    assert (listed.lost_inside, listed.refused, listed.refused_unplaced) == (1, 4, 0)
    assert listed.windows[0].lost_inside_by_thread == (("1", ((4, 4),)),)


def test_the_pub_binds_layout_takes_the_reconnect_source_and_the_default_one_the_attach_source():
    def block(variant):
        report = _reset_report([500, 1500], [500.1, 1600])
        report["faults"][0].update(kind="kill", target="sender")
        report["params"].update(pattern="pubsub", variant=variant)
        report["versions"] = {"libzmq": "4.3.5"}
        return fv.judged(report)
    assert "session_base.cpp#L576" in block("pub-binds")["expectation"]["source_url"]
    assert "xsub.cpp" in block("default")["expectation"]["source_url"]


def test_a_mixed_pair_in_the_pub_binds_layout_has_its_own_promise():
    e = ex.expected_for("pubsub", "kill", "sender", {"pub-binds"}, "4.1.6->4.3.5")
    assert e.scenario_id == "mixed-pub-kill" and e.options == frozenset({"pub-binds"})
    assert ex.expected_for("pubsub", "kill", "sender", set(), "4.1.6->4.3.5").options == frozenset()
    assert ex.expected_for("pubsub", "kill", "sender", {"pub-binds"}, "4.3.5->4.1.6").libzmq == "4.3.5->4.1.6"
