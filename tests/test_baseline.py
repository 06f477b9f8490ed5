"""lab.baseline: expected verdicts, the gate on changes, and bad baselines."""
import json

import pytest

from factories import make_matrix
from lab import baseline as bl
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
