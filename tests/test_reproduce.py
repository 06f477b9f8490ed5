"""The write-up's claims judged against synthetic verdicts: agreement needs the failure of the
kind the write-up reports; a 'works' claim is contradicted by any failing run."""
import pytest

from lab import reproduce as rep
from lab.errors import LabError
from lab.verdicts import judge_runs
from tests.factories import make_report


def claim(title):
    return next(c for c in rep.CLAIMS if c.title == title)


def verdict(c, outcomes, **kw):
    cell = c.cell("pyzmq-25.1.2")
    return judge_runs(cell, [make_report(o, cell, **kw) for o in outcomes])


def test_every_published_configuration_is_a_claim_in_the_originals_setting():
    titles = [c.title for c in rep.CLAIMS]
    assert titles == ["PUB/SUB 10×1000", "PUB/SUB 10×1000 -poll", "PUB/SUB 100×1000 -poll",
                      "PAIRs 1×1000", "PAIRs 1×1000 -poll", "PUSH/PULL 100×1000",
                      "PUSH/PULL 100×1000 -poll", "CLIENT/SERVER 100×1000", "CLIENT/SERVER 100×1000 -poll"]
    for c in rep.CLAIMS:
        cell = c.cell("t")
        assert cell.transport == "inproc" and cell.sync == "none"
    assert [c.title for c in rep.CLAIMS if c.drafts_only] == titles[-2:]
    assert not rep.applies(claim("CLIENT/SERVER 100×1000"), draft=False)
    assert rep.applies(claim("CLIENT/SERVER 100×1000"), draft=True)


def test_works_claim_agrees_only_without_any_failure():
    c = claim("PUB/SUB 10×1000 -poll")
    ok = rep.judge(c, verdict(c, ["ok"] * 10))
    assert ok.agrees and "0/10 runs, 95% CI 0–28%" in ok.why
    one = rep.judge(c, verdict(c, ["ok"] * 9 + ["lost"]))
    assert not one.agrees and "failed 1/10" in one.why


def test_initial_loss_claim_needs_a_gap_at_the_first_message():
    c = claim("PUB/SUB 100×1000 -poll")
    at_one = rep.judge(c, verdict(c, ["lost"] * 3))
    assert at_one.agrees, at_one.why
    assert "lost their first message" in at_one.why and "shutdown message lost in 0/3" in at_one.why
    # a loss that is not of the first messages is not what the write-up reports
    cell = c.cell("pyzmq-25.1.2")
    reports = [make_report("lost", cell) for _ in range(3)]
    for r in reports:
        for t in r["threads"]:
            if t["first_gap"]:
                t["first_gap"] = {"expected": 40, "got": 41}
    late = rep.judge(c, judge_runs(cell, reports))
    assert not late.agrees and "0 of 3 gapped threads" in late.why


def test_shutdown_subclaims_are_checked_both_ways():
    lost_claim = claim("PUB/SUB 10×1000")          # write-up: the shutdown is lost too
    cell = lost_claim.cell("pyzmq-25.1.2")
    received = judge_runs(cell, [make_report("lost", cell) for _ in range(2)])
    assert not rep.judge(lost_claim, received).agrees
    reports = [make_report("lost", cell) for _ in range(2)]
    reports[0]["shutdown_received"] = False
    assert rep.judge(lost_claim, judge_runs(cell, reports)).agrees
    proceeds = claim("PUB/SUB 100×1000 -poll")      # write-up: shutdown proceeds normally
    cell = proceeds.cell("pyzmq-25.1.2")
    reports = [make_report("lost", cell) for _ in range(2)]
    reports[1]["shutdown_received"] = False
    j = rep.judge(proceeds, judge_runs(cell, reports))
    assert j.agrees and "shutdown message lost in 1/2" in j.why      # one run proceeded, as the write-up's
    reports[0]["shutdown_received"] = False
    j = rep.judge(proceeds, judge_runs(cell, reports))
    assert not j.agrees and "shutdown message lost in 2/2" in j.why


@pytest.mark.parametrize("outcomes,agrees", [(["deadlock"] * 3, True), (["deadlock", "error", "error"], True),
                                             (["error"] * 3, False), (["ok"] * 3, False)])
def test_deadlock_claim_needs_a_deadlock(outcomes, agrees):
    c = claim("PAIRs 1×1000 -poll")
    j = rep.judge(c, verdict(c, outcomes))
    assert j.agrees is agrees, j.why
    if "error" in outcomes and "deadlock" in outcomes:
        assert "also error 2" in j.why


def test_reports_show_every_disagreement_with_its_explanation():
    c, w = claim("PUB/SUB 10×1000 -poll"), claim("PUSH/PULL 100×1000")
    js = [rep.judge(c, verdict(c, ["lost", "ok"])), rep.judge(w, verdict(w, ["ok", "ok"]))]
    text = rep.markdown(js, {"run": "r1"}, {c.title: "Python is slower between connect and send."})
    assert "**DISAGREE**" in text and "Python is slower between connect and send." in text
    assert "**1 of 1 targets agree.**" in text and "- run: r1" in text
    lines = rep.lines(js)
    assert lines[0].startswith("PUB/SUB 10×1000 -poll — write-up:") and "[0/1 targets agree]" in lines[0]
    assert lines[1].lstrip().startswith("DISAGREE pyzmq-25.1.2")
    assert any(line.lstrip().startswith("AGREE") for line in lines)
    unexplained = rep.markdown(js, {}, {})
    assert "*not explained yet.*" in unexplained


def test_a_configuration_lost_to_the_infrastructure_is_not_called_unsupported():
    c = claim("PUSH/PULL 100×1000")
    j = rep.judge(c, verdict(c, ["infra", "infra"]))
    assert not j.agrees and j.why == "nothing judged: every run was lost to the infrastructure"


def test_configurations_are_selected_by_slug():
    assert [c.slug for c in rep.CLAIMS][:3] == ["pubsub-10x1000", "pubsub-10x1000-poll", "pubsub-100x1000-poll"]
    assert rep.select_claims("all") == rep.CLAIMS
    assert [c.title for c in rep.select_claims("pair-1x1000-poll, pubsub-10x1000")] == [
        "PUB/SUB 10×1000", "PAIRs 1×1000 -poll"]
    with pytest.raises(LabError, match="unknown configuration 'pubsub-10x100'"):
        rep.select_claims("pubsub-10x100")


def test_an_agreeing_configuration_with_a_differing_detail_gets_its_note():
    c = claim("PAIRs 1×1000 -poll")
    text = rep.markdown([rep.judge(c, verdict(c, ["deadlock"]))], {}, {c.title: "sooner than the write-up's #37."})
    assert "**1 of 1 targets agree.**" in text and "Note: sooner than the write-up's #37." in text
    assert "Why they disagree" not in text
