"""lab.report_junit: one testcase per cell; failures, errors and skips as JUnit expects."""
import xml.etree.ElementTree as ET

from factories import make_cell, make_matrix, make_reports
from lab import report_junit
from lab.matrix import build
from lab.verdicts import judge_runs

SPEC = {
    ("pyzmq-25.1.2", "pair", "inproc"): ["deadlock"] * 3,
    ("pyzmq-25.1.2", "pushpull", "tcp"): ["ok"] * 3,
    ("pyzmq-25.1.2", "clientserver", "tcp", "shared"): ["unsupported"],
    ("pyzmq-27.3.0", "pubsub", "tcp"): ["ok", "lost", "ok"],
    ("pyzmq-27.3.0", "pushpull", "tcp"): "skipped",
}


def test_testcases_and_totals():
    root = ET.fromstring(report_junit.render(make_matrix(SPEC)))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("5", "2", "2", "0")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["pyzmq-25.1.2", "pyzmq-27.3.0"]
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    deadlock = cases[("zmqlab.pyzmq-25.1.2", "pair/inproc/default")].find("failure")
    assert deadlock.get("type") == "deadlock" and "run 1: deadlock" in deadlock.text
    lost = cases[("zmqlab.pyzmq-27.3.0", "pubsub/tcp/default")].find("failure")
    assert lost.get("type") == "lost" and lost.get("message").endswith("first gap: thread 1 got #17 expecting #1")
    assert cases[("zmqlab.pyzmq-25.1.2", "pushpull/tcp/default")].find("failure") is None
    assert cases[("zmqlab.pyzmq-25.1.2", "clientserver/tcp/shared")].find("skipped") is not None
    assert cases[("zmqlab.pyzmq-27.3.0", "pushpull/tcp/default")].find("skipped") is not None


def test_inconsistent_verdict_is_an_error_and_text_is_escaped():
    cell = make_cell(pattern="pushpull")
    bad = judge_runs(cell, make_reports(["ok"], cell) + make_reports(["ok"], cell, pattern="pair"))
    reason = 'ZMQError: <angle> & "quotes"'
    cell2 = make_cell(pattern="pubsub")
    odd = judge_runs(cell2, make_reports(["error"], cell2, error=reason))
    root = ET.fromstring(report_junit.render(build("r", "local", [bad, odd])))
    assert root.get("errors") == "1"
    assert root.find(".//error").get("type") == "inconsistent"
    failure = root.find(".//testcase[@name='pubsub/tcp/default']/failure")
    assert failure.get("type") == "error" and reason in failure.text and reason in failure.get("message")
