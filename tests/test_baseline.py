"""lab.baseline: expected verdicts, the gate on changes, and bad baselines."""
import json

import pytest

from factories import make_cell, make_matrix, make_verdict
from lab import baseline as bl
from lab import compare as cmp
from lab import results, schemas, sweep
from lab.errors import LabError

A, B = "pyzmq-25.1.2", "pyzmq-27.3.0"
PINNED = (A, "pyzmq-26.4.0", B)
SPEC = {(A, "pair", "inproc"): ["deadlock"] * 5, (A, "pubsub", "tcp"): ["lost"] * 5,
        (A, "pushpull", "tcp"): ["ok"] * 5, (A, "clientserver", "tcp", "shared"): ["unsupported"],
        (B, "pushpull", "tcp", "default", True): ["ok"] * 5, (B, "pair", "tcp"): "skipped"}


def test_document_is_schema_valid_and_leaves_out_skipped_cells():
    doc = bl.from_matrix(make_matrix(SPEC))
    schemas.validate("baseline", doc)
    keys = [c["key"] for c in doc["cells"]]
    assert f"{B}/pair/tcp/default" not in keys
    assert f"{B}/pushpull/tcp/default+poll" in keys and len(keys) == 5
    clientserver = next(c for c in doc["cells"] if c["cell"]["pattern"] == "clientserver")
    assert clientserver["outcome"] == "unsupported" and "draft API" in clientserver["note"]


def test_known_bad_cells_pass_the_gate_and_changes_fail_it():
    base = bl.from_dict(bl.from_matrix(make_matrix(SPEC)), PINNED)
    same = bl.gate(base, make_matrix(SPEC, run_id="again"))
    assert same.exit_code == 0 and not same.worse      # PAIR deadlocks, PUB/SUB loses: expected
    changed = dict(SPEC)
    changed[(A, "pushpull", "tcp")] = ["lost"] * 5
    gated = bl.gate(base, make_matrix(changed, run_id="later"))
    assert [c.label for c in gated.worse] == [f"{A}/pushpull/tcp/default"]
    assert gated.exit_code == 1


def test_cells_missing_from_the_sweep_or_the_baseline_are_listed_not_failed():
    base = bl.from_dict(bl.from_matrix(make_matrix(SPEC)), PINNED)
    sweep_ = make_matrix({(A, "pushpull", "tcp"): ["ok"] * 5, (A, "routerdealer", "ipc"): ["ok"] * 5})
    gated = bl.gate(base, sweep_)
    reasons = {c.label: c.reason for c in gated.changes}
    assert reasons[f"{A}/pair/inproc/default"] == "only in BASE"
    assert reasons[f"{A}/routerdealer/ipc/default"] == "only in NEW"
    assert gated.exit_code == 0


def test_cells_that_no_longer_exist_are_a_one_line_error():
    doc = bl.from_matrix(make_matrix(SPEC))
    with pytest.raises(LabError, match=r"no longer exist: pyzmq-27.3.0/pushpull/tcp/default\+poll") as e:
        bl.from_dict(doc, (A,))                     # pyzmq-27.3.0 dropped from the pins
    assert "\n" not in str(e.value)
    doc["cells"][0]["cell"]["pattern"] = "radio"    # a pattern the lab no longer knows
    with pytest.raises(LabError, match=r"no longer exist: .*\(\+1 more\)"):
        bl.from_dict(doc, (A,))


def test_refresh_and_gate_through_files(tmp_path):
    m = make_matrix({(A, "pushpull", "tcp"): ["ok"] * 5, (A, "pair", "inproc"): ["deadlock"] * 5})
    run = tmp_path / "results" / m.run_id
    results.save_matrix(run, m)
    path = tmp_path / "expected.json"
    sweep.refresh_baseline(run, path)
    assert json.loads(path.read_text())["source_run"] == m.run_id
    assert sweep.sweep_gate(run, path).exit_code == 0
    # a foreign target in the file: one-line error, and the file is left as it was
    data = json.loads(path.read_text())
    data["cells"][0]["cell"]["target"] = data["cells"][0]["key"].split("/")[0] + "-gone"
    path.write_text(json.dumps(data))
    before = path.read_text()
    with pytest.raises(LabError, match="no longer exist"):
        sweep.sweep_gate(run, path)
    with pytest.raises(LabError, match="is zmqlab.baseline/2, this lab reads zmqlab.baseline/1"):
        path.write_text(json.dumps(dict(data, schema="zmqlab.baseline/2")))
        sweep.load_baseline(path)
    path.write_text(before)
    with pytest.raises(LabError, match="no results directory"):
        sweep.refresh_baseline(tmp_path / "missing", path)
    assert path.read_text() == before


def test_committed_baseline_loads_against_the_pins():
    base = sweep.load_baseline()
    assert base.cells, "baseline/expected.json is empty"
    kinds = {e.side.key.split("/")[1]: e.side.outcome for e in base.cells}
    assert kinds["pushpull"] == "ok" and kinds["pair"] == "deadlock"


# ---- fault cells: the promise the runs were judged against ---------------------------------------

def fault_matrix(run_id, *verdicts):
    from factories import target_rows
    from lab.matrix import build
    return build(run_id, "docker", list(verdicts), params={"runs": 5, "threads": 4, "msgs": 50},
                 targets=target_rows([A]), created="2026-11-27T11:45:01Z")


def test_a_fault_cells_entry_records_its_promise_and_judgements():
    from factories import make_fault_verdict
    m = fault_matrix("r", make_fault_verdict(["lost"] * 5, ["expected"] * 4 + ["not-applied"]),
                     make_fault_verdict(["ok"] * 3, ["no-promise"] * 3, promise=False, fault="partition:tx@1+1"),
                     make_verdict(["ok"] * 5, make_cell(A, "pushpull")))
    doc = bl.from_matrix(m)
    schemas.validate("baseline", doc)
    by_key = {c["key"]: c for c in doc["cells"]}
    reset = by_key[f"{A}/pushpull/tcp/default~reset-rx-1-1@containers"]
    partition = by_key[f"{A}/pushpull/tcp/default~partition-tx-1-1@containers"]
    plain = by_key[f"{A}/pushpull/tcp/default"]
    assert reset["outcome"] == "lost" and len(by_key) == 3
    assert reset["fault"] == {
        "promise": {"scenario_id": "reset-pushpull", "expected": "bounded-loss", "by_design": True,
                    "source_url": "https://github.com/zeromq/libzmq/issues/3392"},
        "judged": {"expected": 4, "unexpected": 0, "no-promise": 0, "not-applied": 1}}
    assert partition["fault"] == {"promise": None, "judged": {"expected": 0, "unexpected": 0,
                                                              "no-promise": 3, "not-applied": 0}}
    assert "fault" not in plain                   # not a fault cell: the entry is as before
    # and back: the baseline's side carries the same judgement the sweep's verdict gives
    loaded = bl.from_dict(doc, PINNED)
    got = {e.side.key: e.side.fault for e in loaded.cells}
    assert got[reset["key"]] == cmp.Side.of(next(v for v in m.verdicts if v.cell.key == reset["key"])).fault
    assert got[plain["key"]] is None


def test_the_gate_passes_by_design_loss_and_fails_a_judgement_turned_unexpected():
    from factories import make_fault_verdict
    base = bl.from_dict(bl.from_matrix(fault_matrix("base", make_fault_verdict(["ok"] * 5, ["expected"] * 5))), PINNED)
    lossy = bl.gate(base, fault_matrix("s1", make_fault_verdict(["lost"] * 5, ["expected"] * 5)))
    assert lossy.exit_code == 0 and lossy.changes[0].reason.startswith("by design: ")
    odd = bl.gate(base, fault_matrix("s2", make_fault_verdict(["ok"] * 5, ["expected"] * 4 + ["unexpected"])))
    assert odd.exit_code == 1
    assert odd.worse[0].reason == ("fault judged expected 5/5 -> expected 4/5, unexpected 1/5 against "
                                   "reset-pushpull: bounded-loss, by design: 3 lost outside the fault window")


def test_an_entry_from_before_fault_records_loads_and_is_judged_on_its_rates():
    from factories import make_fault_verdict
    doc = bl.from_matrix(fault_matrix("base", make_fault_verdict(["ok"] * 5, ["expected"] * 5)))
    del doc["cells"][0]["fault"]
    schemas.validate("baseline", doc)             # older files still satisfy the schema
    base = bl.from_dict(doc, PINNED)
    assert base.cells[0].side.fault is None
    gated = bl.gate(base, fault_matrix("s", make_fault_verdict(["lost"] * 5, ["expected"] * 5)))
    assert gated.exit_code == 1 and gated.worse[0].reason.startswith("failed 0/5")


def test_a_bad_fault_record_is_a_one_line_schema_error():
    from factories import make_fault_verdict
    from lab import expectations
    doc = bl.from_matrix(fault_matrix("base", make_fault_verdict(["ok"] * 5, ["expected"] * 5)))
    bad = json.loads(json.dumps(doc))
    bad["cells"][0]["fault"]["promise"]["by_design"] = "yes"
    with pytest.raises(LabError, match=r"expected.json does not match baseline.schema.json: "
                                       r"cells\[0\]\.fault\.promise\.by_design: 'yes' is not of type 'boolean'") as e:
        schemas.validate("baseline", bad, source="expected.json")
    assert "\n" not in str(e.value)
    bad = json.loads(json.dumps(doc))
    del bad["cells"][0]["fault"]["judged"]["unexpected"]
    assert schemas.problems("baseline", bad)
    # every promised outcome lab/expectations.py knows can be recorded
    for expected in expectations.EXPECTED:
        doc["cells"][0]["fault"]["promise"]["expected"] = expected
        schemas.validate("baseline", doc)
    # the judgements the schema requires are the ones lab.compare counts
    item = schemas.load_schema("baseline")["properties"]["cells"]["items"]
    judged = item["properties"]["fault"]["properties"]["judged"]["required"]
    assert tuple(judged) == cmp.JUDGEMENTS
