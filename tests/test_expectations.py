"""lab/expectations.py: every promise has its source, the lookup picks the right one, judge() both ways."""
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
    hang = _get("req-rep-killed")
    assert ex.judge(hang, _outcome(run="deadlock"))[0] == "expected"
    assert ex.judge(hang, _outcome(never=("0",), run="lost"))[0] == "expected"
    assert ex.judge(hang, _outcome(run="ok"))[0] == "unexpected"
    drop = _get("pub-hwm-drop")
    assert ex.judge(drop, _outcome(lost_inside=300, run="lost"))[0] == "expected"
    assert ex.judge(drop, _outcome(lost_inside=300, lost_outside=1, run="lost"))[0] == "unexpected"
    missing = _get("heartbeat-416")
    assert ex.judge(missing, _outcome(run="unsupported"))[0] == "expected"
    assert ex.judge(missing, _outcome(run="ok"))[0] == "unexpected"
    assert ex.judge(drop, None)[0] == "unexpected"
    assert ex.judge(drop, _outcome(run="error"))[0] == "unexpected"


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
