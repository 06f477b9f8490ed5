from factories import make_matrix, make_reports, make_cell, make_verdict
from lab import render
from lab.matrix import build
from lab.verdicts import judge_runs

SPEC = {
    ("pyzmq-25.1.2", "pair", "inproc"): ["deadlock"] * 5,
    ("pyzmq-25.1.2", "pubsub", "tcp", "default", False): ["lost"] * 3 + ["ok"] * 2,
    ("pyzmq-25.1.2", "pubsub", "tcp", "default", True): ["ok"] * 5,
    ("pyzmq-25.1.2", "clientserver", "inproc", "shared"): ["unsupported"] * 5,
    ("pyzmq-26.4.0", "pubsub", "tcp", "default", False): ["lost", "deadlock", "ok"],
    ("pyzmq-27.3.0", "pair", "inproc"): "skipped",
}


def test_cell_text():
    assert render.cell_text(None) == "-"
    assert render.cell_text(make_verdict(["ok"] * 5)) == "ok 5/5"
    assert render.cell_text(make_verdict(["lost"] * 3 + ["ok"] * 2)) == "LOST 3/5"
    assert render.cell_text(make_verdict(["deadlock"] * 5)) == "DEADLOCK 5/5"
    assert render.cell_text(make_verdict(["lost", "deadlock", "ok"])) == "DEADLOCK 2/3*"
    assert render.cell_text(make_verdict(["unsupported"] * 2)) == "unsup"
    assert render.cell_text(make_verdict(["unsupported", "ok"])) == "unsup 1/2"
    assert render.cell_text(make_verdict("skipped")) == "skip"
    cell = make_cell()
    inconsistent = judge_runs(cell, make_reports(["ok"], cell) + make_reports(["ok"], cell, pattern="pair"))
    assert render.cell_text(inconsistent) == "ERROR!"


def test_table_layout():
    text = render.table(make_matrix(SPEC), width=120)
    lines = [l.rstrip() for l in text.splitlines()]
    assert lines[0].startswith("zmqlab run 20261127-114501-ab12 · backend local")
    row = next(l for l in lines if l.lstrip().startswith("pyzmq-25.1.2") and "DEADLOCK" in l)
    assert "DEADLOCK 5/5" in row
    unsup = [l for l in lines[lines.index("clientserver"):] if l.lstrip().startswith("pyzmq-25.1.2")][0]
    assert unsup.split() == ["pyzmq-25.1.2", "unsup"]
    assert any(l.lstrip().startswith("libzmq 4.3.4") for l in lines)          # versions under the name
    pubsub_row = [l for l in lines[lines.index("pubsub"):] if l.lstrip().startswith("pyzmq-25.1.2")][0]
    assert "LOST 3/5" in pubsub_row and "ok 5/5" in pubsub_row
    assert "skip" in next(l for l in lines if l.lstrip().startswith("pyzmq-27.3.0"))
    # columns line up: the cell sits under its column's header
    header = next(l for l in lines[lines.index("pubsub"):] if "+poll" in l)
    assert pubsub_row.index("ok 5/5") == header.index("+poll")
    assert "legend:" in lines and any("unsup" in l and "not available" in l for l in lines)
    assert "cells: 6 (1 skipped, 1 ok, 1 unsupported, 1 lost, 2 deadlock)" in lines


def test_table_fits_the_width_without_losing_a_column():
    spec = {("pyzmq-25.1.2", p, t, "default", poll): ["ok"] for p in ("pair", "pubsub", "pushpull")
            for t in ("inproc", "ipc", "tcp") for poll in (False, True)}
    for width in (60, 80, 200):
        text = render.table(make_matrix(spec), width=width)
        assert max(len(l.rstrip()) for l in text.splitlines() if not l.startswith(("zmqlab", "  "))) <= width
        assert text.count("ok 1/1") == 18                   # every column shown, split if need be
    assert "pair (1/" in render.table(make_matrix(spec), width=60)
    assert "pair (1/" not in render.table(make_matrix(spec), width=200)


def test_markdown():
    md = render.markdown(make_matrix(SPEC))
    assert md.startswith("# zmqlab run 20261127-114501-ab12\n")
    assert "## pubsub\n\n| target | libzmq | tcp default | tcp default+poll |\n|---|---|---|---|\n" in md
    assert "| pyzmq-25.1.2 | 4.3.4 | **LOST 3/5** | ok 5/5 |" in md
    assert "**DEADLOCK 2/3\\***" in md
    assert "## Failures" in md
    assert ("- pyzmq-25.1.2 pubsub/tcp default: lost 3/5 runs (60%, 95% CI 23–88%); "
            "first gap: thread 1 got #17 expecting #1") in md
    assert "  - run 1: lost (harness, 0.5s): first gap thread 1 got #17 expecting #1; 1/4 threads affected, 16 missing" in md
    assert "  - run 2: deadlock (watchdog, 5.5s): stuck: thread 0 (send)" in md
    assert "## Not run" in md and "skipped: docker backend" in md
    assert "- `unsup` not available" in md


def test_markdown_without_failures():
    md = render.markdown(make_matrix({("t", "pair", "tcp"): ["ok"]}))
    assert "## Failures\n\nNone." in md


def test_verdict_line_is_the_summary():
    v = make_verdict(["lost", "ok"])
    assert render.verdict_line(v) == v.summary_line()


def test_empty_matrix_renders():
    m = build("r", "local", [])
    assert "(no cells)" in render.table(m)
    assert "None." in render.markdown(m)


def test_a_partial_run_says_so_in_every_rendering():
    whole = build("r1", "local", [make_verdict(["ok"])], params={"complete": True, "plan": [{}, {}]})
    partial = build("r1", "local", [make_verdict(["ok"])], params={"complete": False, "plan": [{}, {}, {}]})
    assert "PARTIAL" not in render.table(whole) + render.markdown(whole)
    for text in (render.table(partial), render.markdown(partial)):
        assert "PARTIAL RUN: 1 of 3 cells have a verdict" in text and "--resume" in text


def test_markdown_lists_runs_lost_to_the_infrastructure_apart():
    cell = make_cell()
    verdict = judge_runs(cell, make_reports(["infra", "ok"], cell))
    md = render.markdown(build("r", "docker", [verdict]))
    section = md.split("## Infrastructure (not counted)")[1]
    assert "run 1: infra" in section and "run 2" not in section
    assert "## Failures\n\nNone." in md


def test_a_fault_cell_shows_whether_its_outcome_was_the_promised_one():
    from lab.cells import Cell
    from lab.faults import parse
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=2, msgs=5, topology="containers",
                fault=parse("reset:rx@1+1"))

    def verdict(*judged):
        reports = make_reports(["lost"] * len(judged), cell, topology="containers")
        for report, j in zip(reports, judged):
            report["fault"] = {"judged": j, "why": "2 lost outside the fault window" if j != "expected" else "ok",
                               "explain": "reset rx 1.00–2.00 s: 3 lost inside", "outcome": {},
                               "expectation": {"scenario_id": "push-reset", "expected": "bounded-loss",
                                               "by_design": True, "source_url": "https://github.com/zeromq/libzmq/issues/3392"}}
        return judge_runs(cell, reports)
    assert render.cell_text(verdict("expected", "expected")) == "LOST 2/2 exp"
    odd = verdict("expected", "unexpected")
    assert render.cell_text(odd) == "LOST 2/2 UNEXP"
    line = odd.summary_line()
    assert "fault: expected 1/2, unexpected 1/2 [push-reset: bounded-loss, by design; https://github.com/zeromq/libzmq/issues/3392]" in line
    assert "unexpected: 2 lost outside the fault window" in line
    assert render.cell_text(verdict("no-promise")) == "LOST 1/1 ?"
