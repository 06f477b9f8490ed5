"""The interop grid: built from verdicts, rendered (Markdown, terminal, JSON, HTML), its odd
cells (pure, synthetic); and a real 2-pin grid through `./zmqlab interop` (docker, slow)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from factories import make_verdict, target_rows
from lab import interop
from lab.cells import Cell
from lab.errors import LabError
from lab.matrix import build

A, B, C = "pyzmq-25.1.2", "pyzmq-26.4.0", "pyzmq-27.3.0"
REPO = Path(__file__).resolve().parents[1]


def cell(sender, receiver, pattern="pushpull", sync="none"):
    return Cell(receiver, pattern, "tcp", sync=sync, threads=4, msgs=50, topology="containers", sender=sender)


def grid_of(outcomes: dict, pins=(A, B), extra=()) -> interop.Grid:
    """outcomes: {(sender, receiver, pattern, sync): [run outcomes] | 'skipped'}"""
    verdicts = [make_verdict(o, cell(s, r, p, y)) for (s, r, p, y), o in outcomes.items()]
    m = build("20261127-120000-abcd", "docker", verdicts + list(extra), targets=target_rows(pins),
              params={"repeat": 3, "threads": 4, "msgs": 50, "interop": list(pins), "jobs": 2})
    return interop.build(m)


OK, LOST2, LOST3 = ["ok"] * 3, ["lost", "lost", "ok"], ["lost"] * 3
TWO = {(A, A, "pushpull", "none"): OK, (A, B, "pushpull", "none"): LOST2,
       (B, A, "pushpull", "none"): OK, (B, B, "pushpull", "none"): OK,
       (A, A, "pubsub", "xpub"): OK, (A, B, "pubsub", "xpub"): OK,
       (B, A, "pubsub", "xpub"): OK, (B, B, "pubsub", "xpub"): LOST3}


def test_the_grid_is_senders_by_receivers_per_pattern_label():
    threads = make_verdict(OK, Cell(A, "pushpull", "tcp", threads=4, msgs=50))      # not a pair: left out
    g = grid_of(TWO, extra=[threads])
    assert g.pins == (A, B)
    assert g.labels == ("pubsub+xpub", "pushpull")         # canonical cell order
    assert g.square("pushpull", A, B).cell.key == f"{A}>{B}/pushpull/tcp/default@containers"
    assert g.square("pushpull", A, A).cell.key == f"{A}/pushpull/tcp/default@containers"
    assert g.square("pushpull", B, A).cell.row == f"{B}>{A}"
    assert g.versions == {A: "libzmq 4.3.4", B: "libzmq 4.3.5"}
    assert interop.grid_label(Cell(A, "clientserver", "tcp", "per-thread", poll=True)) == "clientserver/per-thread+poll"
    assert interop.grid_label(Cell(A, "clientserver", "tcp")) == "clientserver"


def test_odd_cells_differ_from_both_same_version_neighbours():
    g = grid_of(TWO)
    odd = interop.odd_cells(g)
    # pushpull A->B lost while A->A and B->B are ok: odd. pubsub+xpub A->B ok equals A->A: not odd
    assert [(o.label, o.sender, o.receiver) for o in odd] == [("pushpull", A, B)]
    assert odd[0].line() == (f"pushpull: {A} -> {B} is LOST 2/3, but {A} -> itself ok 3/3 and {B} -> itself ok 3/3")
    three = {(s, r, "pair", "none"): OK for s in (A, B, C) for r in (A, B, C)}
    three[(C, C, "pair", "none")] = LOST3
    three[(A, C, "pair", "none")] = ["deadlock"] * 3          # differs from A->A (ok) and C->C (lost)
    three[(B, C, "pair", "none")] = LOST3                     # like C->C: C explains it
    three[(C, A, "pair", "none")] = "skipped"                 # nothing judged: never odd
    odd = interop.odd_cells(grid_of(three, pins=(A, B, C)))
    assert [(o.sender, o.receiver) for o in odd] == [(A, C)]
    no_diagonal = {k: v for k, v in TWO.items() if k[0] != k[1] or k[0] != B}
    assert [(o.label, o.sender, o.receiver) for o in interop.odd_cells(grid_of(no_diagonal))] == []


def test_markdown_has_one_table_per_label_and_every_link_has_its_evidence():
    md = interop.markdown(grid_of(TWO))
    assert "## pushpull" in md and "## pubsub+xpub" in md
    assert f"| sender \\ receiver | {A} | {B} |" in md
    row = next(ln for ln in md.splitlines() if ln.startswith(f"| {A} libzmq 4.3.4 |") and "LOST" in ln)
    assert row == f"| {A} libzmq 4.3.4 | [ok 3/3](#ev-1-0-0) | [**LOST 2/3**](#ev-1-0-1) |"
    links = set(re.findall(r"\(#(ev-\d+-\d+-\d+)\)", md))
    anchors = set(re.findall(r'<a id="(ev-\d+-\d+-\d+)"></a>', md))
    assert links == anchors and len(links) == 8
    evidence = md[md.index('<a id="ev-1-0-1">'):].splitlines()
    assert evidence[1] == "  - runs: lost, lost, ok"
    assert evidence[2] == "  - first gap: thread 1 got #17 expecting #1"
    assert "## Odd cells" in md and f"- pushpull: {A} -> {B} is LOST 2/3" in md


def test_terminal_table_numbers_the_receivers_and_lists_odd_cells():
    text = interop.table(grid_of(TWO), width=100)
    lines = text.splitlines()
    assert any(ln.split() == ["sender", "\\", "receiver", "1", "2"] for ln in lines)
    assert any(ln.split()[:4] == ["1", A, "ok", "3/3"] and ln.split()[-2:] == ["LOST", "2/3"] for ln in lines)
    assert "odd cells (differ from both same-version neighbours): 1" in text
    assert f"  pushpull: {A} -> {B} is LOST 2/3" in text


def test_a_grid_too_wide_for_the_terminal_is_split_never_cut():
    pins = (A, B, C)
    g = grid_of({(s, r, "pair", "none"): ["deadlock"] * 3 for s in pins for r in pins}, pins=pins)
    text = interop.table(g, width=50)
    assert "pair (1/2)" in text and "pair (2/2)" in text and "…" not in text
    assert text.count("DEADLOCK 3/3") == 9 and max(len(ln) for ln in text.splitlines() if "DEADLOCK" in ln) <= 50


def test_json_holds_every_square_with_its_evidence():
    data = json.loads(interop.to_json(grid_of(TWO)))
    assert data["schema"] == "zmqlab.interop/1" and data["pins"] == [A, B]
    assert (data["rows"], data["columns"]) == ("sender", "receiver")
    square = data["grids"]["pushpull"][0][1]
    assert (square["sender"], square["receiver"], square["text"], square["outcome"]) == (A, B, "LOST 2/3", "lost")
    assert square["evidence"]["runs"] == ["lost", "lost", "ok"] and square["n"] == 3
    assert [o["receiver"] for o in data["odd"]] == [B]


def test_html_is_self_contained_with_a_panel_behind_every_cell():
    from lab import report_interop
    page = report_interop.render(grid_of(TWO))
    assert page.startswith("<!doctype html>") and "http://" not in page and "https://" not in page
    hrefs = set(re.findall(r'href="#(ev-[\d-]+)"', page))
    panels = set(re.findall(r'<section class="ev" id="(ev-[\d-]+)"', page))
    assert hrefs == panels and len(panels) == 8
    assert "Odd cells</b> (1)" in page and 'class="lost odd"' in page
    panel = page[page.index('id="ev-1-0-1"'):]
    panel = panel[:panel.index("</section>")]
    assert f"pushpull: {A} → {B}" in panel and "first gap:" in panel and "<td>lost</td>" in panel


# ---- interop.json against interop.schema.json ----------------------------------------------------

def test_a_grid_saves_as_a_valid_interop_json_and_loads_back(tmp_path):
    from lab import schemas
    outcomes = dict(TWO)
    outcomes[(B, A, "pushpull", "none")] = "skipped"                   # evidence without runs
    outcomes[(A, A, "pushpull", "none")] = ["infra", "ok", "ok"]
    del outcomes[(B, B, "pubsub", "xpub")]                              # a square never run: null
    g = grid_of(outcomes)
    assert schemas.problems("interop", interop.to_dict(g)) == []
    path = interop.save(tmp_path, g)
    assert path == tmp_path / "interop.json"
    assert path.read_text() == interop.to_json(g)      # the text as before: only now checked
    data = interop.load(tmp_path)
    assert data["grids"]["pubsub+xpub"][1][1] is None and data["grids"]["pushpull"][1][0]["outcome"] == "skipped"
    assert interop.load(path) == data


def _one_line_error(path, match):
    with pytest.raises(LabError, match=match) as e:
        interop.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_corrupt_or_wrong_interop_json_is_a_one_line_error(tmp_path):
    good = interop.to_dict(grid_of(TWO))
    path = tmp_path / "interop.json"
    path.write_text(interop.to_json(grid_of(TWO))[:200])
    _one_line_error(path, r"interop.json is not valid JSON: line \d+ column \d+")
    path.write_text(json.dumps(dict(good, schema="zmqlab.matrix/1")))
    _one_line_error(path, r"is not a zmqlab interop file \(schema: 'zmqlab.matrix/1', expected zmqlab.interop/1\)")
    path.write_text(json.dumps(dict(good, schema="zmqlab.interop/2")))
    _one_line_error(path, r"is zmqlab.interop/2, this lab reads zmqlab.interop/1")
    bad = json.loads(json.dumps(good))
    bad["grids"]["pushpull"][0][1]["outcome"] = "fine"
    path.write_text(json.dumps(bad))
    _one_line_error(path, r"does not match interop.schema.json: grids.pushpull\[0\]\[1\].outcome: 'fine' is not one of")
    bad = json.loads(json.dumps(good))
    del bad["grids"]["pushpull"][1][0]["evidence"]["runs"]
    path.write_text(json.dumps(bad))
    _one_line_error(path, r"grids.pushpull\[1\]\[0\].evidence: 'runs' is a required property")
    (tmp_path / "gone").mkdir()
    _one_line_error(tmp_path / "gone", r"gone/interop.json does not exist")


def test_an_interop_json_at_odds_with_itself_is_a_one_line_error(tmp_path):
    good = interop.to_dict(grid_of(TWO))
    path = tmp_path / "interop.json"
    swapped = json.loads(json.dumps(good))
    swapped["grids"]["pushpull"].reverse()                  # rows no longer in the pins' order
    path.write_text(json.dumps(swapped))
    _one_line_error(path, rf"is inconsistent: grids.pushpull\[0\]\[0\] is {B} -> {A}, where {A} -> {A} belongs")
    short = json.loads(json.dumps(good))
    short["grids"]["pushpull"][0].pop()
    path.write_text(json.dumps(short))
    _one_line_error(path, r"is inconsistent: grids.pushpull\[0\] has 1 squares, not 2 \(one per pin\)")
    path.write_text(json.dumps(dict(good, pins=[A, B, C])))
    _one_line_error(path, r"is inconsistent: grids.pubsub\+xpub has 2 rows, not 3 \(one per pin\)")
    stray = json.loads(json.dumps(good))
    stray["odd"][0]["receiver"] = C
    path.write_text(json.dumps(stray))
    _one_line_error(path, rf"is inconsistent: odd\[0\] names pushpull: {A} -> {C}, which no grid holds")


def test_a_grid_the_schema_refuses_is_never_written(tmp_path):
    g = grid_of(TWO)
    interop.save(tmp_path, g)
    before = (tmp_path / "interop.json").read_text()
    broken = interop.Grid("", g.params, g.pins, g.labels, g.squares, g.versions)     # no run id
    with pytest.raises(LabError, match=r"interop.json does not match interop.schema.json: run_id: '' should be non-empty"):
        interop.save(tmp_path, broken)
    assert (tmp_path / "interop.json").read_text() == before


# ---- the real thing ----------------------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.slow
def test_a_two_pin_grid_through_invoke_interop(tmp_path, engine_client):
    """`./zmqlab interop` on 2 pins, pushpull, 1 run a cell: exit 0, the 2x2 table in interop.md,
    the reports beside matrix.json, and nothing left on the engine. (The task builds the two
    images it needs itself.)"""
    proc = subprocess.run(["./zmqlab", "interop", "--targets", f"{A},{B}", "--patterns", "pushpull", "--sync", "none",
                           "--repeat", "1", "--threads", "4", "--msgs", "50", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, COLUMNS="120"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    for name in ("matrix.json", "matrix.md", "interop.md", "interop.json", "interop.html"):
        assert (run_dir / name).is_file(), name
    md = (run_dir / "interop.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert table[0] == f"| sender \\ receiver | {A} | {B} |" and len(table) == 3
    for line in table[1:]:
        assert len(re.findall(r"\[(?:\*\*)?(?:ok|LOST|MISORDERED|DEADLOCK|ERROR) 1/1", line)) == 2, line
    data = interop.load(run_dir)                     # as the lab wrote it: schema-valid and consistent
    senders = [row for row in data["grids"]["pushpull"]]
    assert [[sq["evidence"]["key"] for sq in row] for row in senders] == [
        [f"{A}/pushpull/tcp/default@containers", f"{A}>{B}/pushpull/tcp/default@containers"],
        [f"{B}>{A}/pushpull/tcp/default@containers", f"{B}/pushpull/tcp/default@containers"]]
    assert all(sq["n"] == 1 for row in senders for sq in row)
    assert "sender \\ receiver" in proc.stdout and "odd cells" in proc.stdout
    ours = {"label": f"org.zmqlab.run={run_dir.name}"}
    assert engine_client.containers.list(all=True, filters=ours) == [] and engine_client.networks.list(filters=ours) == []


def test_report_on_an_interop_run_writes_its_grid_page_again_and_refuses_a_corrupt_interop_json(tmp_path):
    from lab import results, sweep
    verdicts = [make_verdict(o, cell(s, r, p, y)) for (s, r, p, y), o in TWO.items()]
    m = build("20261127-120000-abcd", "docker", verdicts, targets=target_rows((A, B)),
              params={"repeat": 3, "threads": 4, "msgs": 50, "interop": [A, B], "jobs": 2})
    results.save_matrix(tmp_path, m)
    interop.save(tmp_path, interop.build(m))
    written = sweep.write_reports(tmp_path, html=True, junit=False)
    assert tmp_path / "interop.html" in written and "pushpull" in (tmp_path / "interop.html").read_text()
    (tmp_path / "interop.json").write_text("{")
    with pytest.raises(LabError, match="interop.json is not valid JSON"):
        sweep.write_reports(tmp_path, html=True, junit=False)
    assert sweep.write_reports(tmp_path, html=False, junit=True) == [tmp_path / "junit.xml"]
