import pytest

from factories import make_cell, make_report, make_reports, make_verdict
from lab.errors import LabError
from lab.schemas import validate
from lab.verdicts import (FAILURES, OUTCOMES, RUN_OUTCOMES, SEVERITY, Verdict, judge_runs, is_failure,
                          skipped, wilson, worst_of)


@pytest.mark.parametrize("outcome", RUN_OUTCOMES)
def test_factory_reports_are_schema_valid(outcome):
    report = make_report(outcome, make_cell(threads=3, msgs=20))
    validate("run", report)          # raises on any mismatch
    assert report["outcome"] == outcome


@pytest.mark.parametrize("k, n, low, high", [
    (7, 10, 0.3968, 0.8922),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (5, 5, 0.5655, 1.0),
    (1, 20, 0.0089, 0.2361),
])
def test_wilson_known_values(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(3, 10, z=2.576)          # 99%: wider than 95%
    lo95, hi95 = wilson(3, 10)
    assert lo < lo95 and hi > hi95
    with pytest.raises(ValueError):
        wilson(4, 3)


def test_severity_order_and_failures():
    assert worst_of(["ok", "unsupported"]) == "unsupported"
    assert worst_of(["lost", "misordered", "ok"]) == "lost"
    assert worst_of(["lost", "deadlock"]) == "deadlock"
    assert worst_of(["deadlock", "error"]) == "error"
    assert [o for o in sorted(SEVERITY, key=SEVERITY.get)] == \
        ["skipped", "infra", "ok", "unsupported", "misordered", "lost", "deadlock", "error"]
    assert not is_failure("unsupported") and not is_failure("ok") and not is_failure("skipped")
    assert not is_failure("infra") and "infra" not in OUTCOMES
    assert all(is_failure(o) for o in FAILURES)


def test_all_ok():
    v = make_verdict(["ok"] * 5)
    assert (v.worst, v.n, v.failures, v.rate) == ("ok", 5, 0, 0.0)
    assert v.rate_high == pytest.approx(0.4345, abs=5e-4)
    assert not v.failed
    assert v.summary_line() == "pyzmq-25.1.2 pubsub/tcp default: ok 5/5 runs (0 failed, 95% CI 0–43%)"


def test_lost_summary_matches_the_write_up_shape():
    cell = make_cell(threads=10, msgs=100)
    reports = make_reports(["lost"] * 7 + ["ok"] * 3, cell, lost_threads=(7,), lost_first=16)
    v = judge_runs(cell, reports)
    assert v.worst == "lost" and v.failures == 7 and v.counts["ok"] == 3
    assert v.summary_line() == ("pyzmq-25.1.2 pubsub/tcp default: lost 7/10 runs (70%, 95% CI 40–89%); "
                                "first gap: thread 7 got #17 expecting #1")
    assert v.runs[0].first_gap == (7, 1, 17)


def test_misordered():
    v = make_verdict(["misordered", "ok"])
    assert v.worst == "misordered" and v.failed
    assert "misordered 1/2 runs" in v.summary_line()
    assert "first gap: thread 1 got #6 expecting #5" in v.summary_line()


def test_deadlock_names_threads_and_states():
    cell = make_cell(pattern="pair", transport="inproc", threads=3)
    v = judge_runs(cell, make_reports(["deadlock"] * 2, cell, stuck_threads=(0, 2), stuck_state="send"))
    assert v.worst == "deadlock"
    line = v.summary_line()
    assert "deadlock 2/2 runs" in line
    assert "stuck: thread 0 (send), thread 2 (send) after 5s without progress, 3 stacks captured" in line
    assert v.runs[0].stall["stacks"]["MainThread"]          # the evidence is kept whole
    assert v.runs[0].classified_by == "watchdog"


def test_error_mentions_the_message():
    v = make_verdict(["ok", "error"])
    assert v.worst == "error"
    assert v.summary_line().endswith("error: ZMQError: Address already in use (addr='tcp://127.0.0.1:5555')")


def test_all_unsupported_is_not_a_failure():
    v = make_verdict(["unsupported"] * 3, pattern="clientserver")
    assert v.worst == "unsupported" and v.failures == 0 and not v.failed
    assert v.summary_line() == ("pyzmq-25.1.2 clientserver/tcp shared: unsupported (3/3 runs): "
                                "CLIENT/SERVER needs the draft API (this libzmq has none)")


def test_mixed_failures_show_a_breakdown():
    v = make_verdict(["lost", "deadlock", "deadlock", "ok"])
    assert v.worst == "deadlock" and v.failures == 3
    assert "failed 3/4 runs (75%, 95% CI 30–95%) [deadlock 2, lost 1]; stuck: thread 0" in v.summary_line()


def test_skipped_verdict():
    v = skipped(make_cell(), "docker: image build failed\n(see log)")
    assert v.worst == "skipped" and v.n == 0 and not v.failed
    assert v.versions is None
    assert v.summary_line() == "pyzmq-25.1.2 pubsub/tcp default: skipped: docker: image build failed (see log)"
    with pytest.raises(LabError):
        Verdict(make_cell())                  # neither runs nor a reason


def test_versions_come_from_the_reports_and_disagreement_is_an_error():
    cell = make_cell()
    v = judge_runs(cell, make_reports(["ok"] * 2, cell))
    assert v.versions == {"pyzmq": "25.1.2", "libzmq": "4.3.4", "draft": False, "python": "3.11.2"}
    other = make_report("ok", cell, versions={"pyzmq": "26.4.0", "libzmq": "4.3.5", "draft": False,
                                              "python": "3.11.2"})
    bad = judge_runs(cell, make_reports(["ok"], cell) + [other])
    assert bad.worst == "error" and bad.failed
    assert "runs disagree on versions" in bad.summary_line()
    assert "pyzmq 26.4.0" in bad.summary_line()


def test_lab_made_reports_without_versions_do_not_count_as_disagreement():
    cell = make_cell()
    unknown = make_report("error", cell, classified_by="lab",
                          versions={"pyzmq": "", "libzmq": "", "draft": False, "python": ""})
    v = judge_runs(cell, [make_report("ok", cell), unknown])
    assert v.problems == () and v.worst == "error"
    assert v.versions["pyzmq"] == "25.1.2"


def test_report_params_must_match_the_cell():
    cell = make_cell(pattern="pubsub")
    v = judge_runs(cell, [make_report("ok", cell, pattern="pair")])
    assert v.worst == "error"
    assert "run 1 ran pattern='pair', the cell has 'pubsub'" in v.summary_line()


def test_no_reports_is_an_error():
    with pytest.raises(LabError, match="no runs to judge"):
        judge_runs(make_cell(), [])


@pytest.mark.parametrize("outcomes", [["ok"] * 3, ["lost", "ok"], ["deadlock"], ["unsupported"],
                                      ["error", "misordered"], "skipped"])
def test_dict_round_trip_is_schema_valid(outcomes):
    v = make_verdict(outcomes)
    data = v.to_dict()
    validate("verdict", data)
    again = Verdict.from_dict(data)
    assert again == v
    assert again.to_dict() == data
    assert again.runs == v.runs and [r.report for r in again.runs] == [r.report for r in v.runs]


def test_from_dict_refuses_edited_derived_fields():
    data = make_verdict(["lost", "ok"]).to_dict()
    data["outcome"] = "ok"
    with pytest.raises(LabError, match="says outcome='ok' but its runs give 'lost'"):
        Verdict.from_dict(data)


def test_verdict_schema_checks_embedded_run_reports():
    data = make_verdict(["ok"]).to_dict()
    del data["runs"][0]["totals"]
    with pytest.raises(LabError, match=r"runs\[0\]: 'totals' is a required property"):
        validate("verdict", data, source="x.json")


def test_deadlock_without_a_stuck_sender_falls_back_to_the_harness_reason():
    cell = make_cell(pattern="pubsub", threads=2)
    report = make_report("deadlock", cell, stuck_threads=(), reason="shutdown sender in send of #1")
    report["threads"][1]["state"] = "running"          # busy looping, not inside zmq: not "stuck"
    v = judge_runs(cell, [report])
    assert v.runs[0].stuck_threads == []
    assert "; shutdown sender in send of #1 after 5s without progress" in v.summary_line()


# ---- runs lost to the infrastructure ---------------------------------------------------------

def test_infra_runs_are_counted_apart_and_never_against_the_target():
    v = make_verdict(["ok", "infra", "ok", "ok"])
    assert (v.worst, v.n, v.infra, v.failures, v.rate) == ("ok", 3, 1, 0, 0.0)
    assert len(v.runs) == 4 and v.counts["infra"] == 1 and not v.failed
    assert v.interval == wilson(0, 3)
    assert v.summary_line() == (
        "pyzmq-25.1.2 pubsub/tcp default: ok 3/3 runs (0 failed, 95% CI 0–56%); infra 1 not counted: "
        "container zmqlab-test-pyzmq-25.1.2-ab12cd was killed from outside: exit 137, OOMKilled=false; "
        "the run was made again in a fresh container")
    lost = make_verdict(["lost", "infra"])
    assert (lost.worst, lost.n, lost.failures, lost.rate) == ("lost", 1, 1, 1.0)
    assert lost.summary_line().startswith("pyzmq-25.1.2 pubsub/tcp default: lost 1/1 runs (100%")
    assert "; infra 1 not counted: container" in lost.summary_line()


def test_a_cell_whose_every_run_was_lost_to_the_infrastructure_is_not_judged():
    v = make_verdict(["infra", "infra"])
    assert (v.worst, v.n, v.infra, v.failures, v.rate, v.interval) == ("infra", 0, 2, 0, 0.0, (0.0, 1.0))
    assert not v.failed
    assert v.summary_line().startswith("pyzmq-25.1.2 pubsub/tcp default: infra 2/2 runs, nothing judged: "
                                       "container zmqlab-test-")
    assert worst_of(["infra", "ok"]) == "ok" and worst_of(["skipped", "infra"]) == "infra"


def test_infra_verdicts_round_trip_and_old_files_without_infra_still_load():
    for outcomes in (["ok", "infra", "lost"], ["infra"], ["ok", "ok"]):
        data = make_verdict(outcomes).to_dict()
        validate("verdict", data)
        back = Verdict.from_dict(data)
        assert (back.n, back.infra, back.worst) == (data["n"], data["counts"]["infra"], data["outcome"])
    old = make_verdict(["ok", "lost"]).to_dict()      # as written before 'infra' existed
    del old["counts"]["infra"]
    validate("verdict", old)
    assert Verdict.from_dict(old).counts["infra"] == 0
    with pytest.raises(LabError, match="counts"):
        Verdict.from_dict(dict(old, counts=dict(old["counts"], infra=1)))


def test_infra_in_the_table_legend_and_reports():
    import xml.etree.ElementTree as ET

    from factories import make_matrix
    from lab import render, report_html, report_junit
    from lab.matrix import Matrix
    m = make_matrix({("pyzmq-25.1.2", "pubsub", "tcp"): ["ok", "infra", "ok"],
                     ("pyzmq-25.1.2", "pair", "inproc"): ["infra", "infra"],
                     ("pyzmq-25.1.2", "pushpull", "tcp"): ["lost", "infra"]})
    texts = {v.cell.pattern: render.cell_text(v) for v in m.verdicts}
    assert texts == {"pubsub": "ok 2/2~", "pair": "infra", "pushpull": "LOST 1/1~"}
    assert {"...~", "infra"} <= {sym for sym, _ in render.LEGEND}
    assert m.tally()["infra"] == 1
    pair = next(v for v in m.verdicts if v.cell.pattern == "pair")
    detail = render.run_detail(pair.runs[0])
    assert detail.startswith("infra (lab, 0.5s): container zmqlab-test-") and "exit 137" in detail
    validate("matrix", m.to_dict())
    assert Matrix.from_dict(m.to_dict()).tally() == m.tally()

    html = report_html.render(m)
    assert 'class="infra"' in html and "lost to the infrastructure, not counted against the target" in html

    root = ET.fromstring(report_junit.render(m).split("\n", 1)[1])
    cases = {c.get("name").split("/")[0]: c for c in root.iter("testcase")}
    assert cases["pair"].find("skipped") is not None                 # nothing judged: an absence
    assert cases["pubsub"].find("failure") is None and cases["pubsub"].find("skipped") is None
    assert cases["pushpull"].find("failure").get("type") == "lost"
    assert (root.get("failures"), root.get("skipped")) == ("1", "1")


def test_timeline_blocks_reach_the_run_summary_and_round_trip():
    """timeline, explain, peers, drain (docs/topology.md): optional, None when a report lacks
    them, and kept through a verdict's to_dict/from_dict (the HTML timeline reads them)."""
    from lab.cells import Cell
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=2, msgs=5, topology="containers")
    blocks = {"timeline": {"clock": "CLOCK_REALTIME, ms since t0 (the receiver's bind)", "t0_ns": 1,
                           "align": {"offset_ms": 0.01, "error_ms": 0.2, "method": "ntp"}, "monitor": "on",
                           "collector_delay_ms": 0.3, "threads": [], "events": [], "unseen": []},
              "explain": ["thread 1 connected 3 ms after its first send"],
              "peers": [{"role": "sender", "host": "c1", "pid": 7, "versions": {}, "account": "final",
                         "clock": {"offset_ms": 0.0, "error_ms": 0.1}, "stacks": None, "own": None}],
              "drain": {"window_s": 0.1, "waited_s": 0.1, "latency_ms": {"recent": 0.2, "max": 0.5},
                        "trigger": "quiet"}}
    with_blocks = dict(make_report("ok", cell, topology="containers"), **blocks)
    verdict = judge_runs(cell, [with_blocks, make_report("ok", cell, topology="containers")])
    validate("verdict", verdict.to_dict())
    again = Verdict.from_dict(verdict.to_dict())
    for v in (verdict, again):
        first, second = v.runs
        assert (first.timeline, first.explain, first.peers, first.drain) == tuple(blocks[k] for k in
                                                                                  ("timeline", "explain", "peers", "drain"))
        assert (second.timeline, second.explain, second.peers, second.drain) == (None, None, None, None)
    assert first.topology == "containers" and not v.problems


def test_a_run_of_another_topology_is_a_lab_problem():
    from lab.cells import Cell
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=2, msgs=5, topology="containers")
    v = judge_runs(cell, [make_report("ok", cell, topology="threads")])
    assert v.problems == ("run 1 ran topology='threads', the cell has 'containers'",)
    # a report that does not state its topology (older harness, the lab's own) is not one
    assert not judge_runs(cell, [make_report("ok", cell)]).problems


def test_summary_line_names_a_pair_of_two_pins():
    from lab.cells import Cell
    cell = Cell("pyzmq-26.4.0", "pubsub", "tcp", threads=2, msgs=5, topology="containers", sender="libzmq-4.1.6")
    line = make_verdict(["ok"], cell).summary_line()
    assert line.startswith("libzmq-4.1.6>pyzmq-26.4.0 pubsub/tcp default@containers: ok 1/1")


def test_a_fault_cells_verdict_matches_the_schema_and_round_trips():
    from factories import make_reports
    from lab import schemas
    from lab.cells import Cell
    from lab.faults import parse
    from lab.verdicts import Verdict, judge_runs
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=10, msgs=1000, topology="containers",
                fault=parse("bandwidth:receiver@1+2=1mbit"))
    verdict = judge_runs(cell, make_reports(["ok"], cell, topology="containers"))
    data = verdict.to_dict()
    schemas.validate("verdict", data)
    assert data["cell"]["fault"]["rate"] == "1mbit"
    assert Verdict.from_dict(data).cell == cell
