import json
import os
import re
from datetime import datetime, timezone

import pytest

from factories import make_matrix, make_verdict
from lab import results
from lab.errors import LabError

SPEC = {
    ("pyzmq-25.1.2", "pubsub", "tcp", "default", False): ["lost", "ok", "lost"],
    ("pyzmq-25.1.2", "pair", "inproc"): ["deadlock"],
    ("pyzmq-27.3.0", "pair", "inproc"): "skipped",
}


def test_new_run_dir_is_fresh_and_named_by_time(tmp_path):
    when = datetime(2026, 11, 27, 11, 45, 1, tzinfo=timezone.utc)
    a = results.new_run_dir(tmp_path / "results", now=when)
    b = results.new_run_dir(tmp_path / "results", now=when)
    assert a != b and a.is_dir() and b.is_dir()
    assert re.fullmatch(r"20261127-114501-[0-9a-f]{4}", a.name)


def test_new_run_dir_unwritable_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LabError, match=f"cannot create results directory {re.escape(str(blocker))}/"):
        results.new_run_dir(blocker)


def test_save_and_load_verdicts(tmp_path):
    run = results.new_run_dir(tmp_path)
    verdicts = [make_verdict(["lost", "ok"]), make_verdict("skipped", pattern="pair"),
                make_verdict(["ok"], poll=True)]
    paths = [results.save_verdict(run, v) for v in verdicts]
    assert paths[0] == run / "cells" / "pyzmq-25.1.2__pubsub__tcp__default.json"
    assert paths[2].name == "pyzmq-25.1.2__pubsub__tcp__default+poll.json"
    loaded = results.load_verdicts(run)
    assert sorted(v.cell.key for v in loaded) == sorted(v.cell.key for v in verdicts)
    assert {v.cell.key: v for v in loaded} == {v.cell.key: v for v in verdicts}
    assert not [p for p in (run / "cells").iterdir() if p.name.startswith(".")]   # no temp files left


def test_load_verdicts_of_a_young_run_and_a_missing_one(tmp_path):
    run = results.new_run_dir(tmp_path)
    assert results.load_verdicts(run) == ()
    with pytest.raises(LabError, match="no results directory"):
        results.load_verdicts(tmp_path / "nope")


def test_matrix_round_trip_via_dir_and_file(tmp_path):
    run = results.new_run_dir(tmp_path)
    m = make_matrix(SPEC)
    path = results.save_matrix(run, m)
    assert path == run / "matrix.json"
    assert results.load_matrix(run) == m
    assert results.load_matrix(path) == m
    assert json.loads(path.read_text())["schema"] == "zmqlab.matrix/1"
    assert results.latest_run_dir(tmp_path) == run


def test_invalid_document_is_not_written_and_old_file_survives(tmp_path):
    run = results.new_run_dir(tmp_path)
    good = make_matrix(SPEC)
    path = results.save_matrix(run, good)
    before = path.read_bytes()
    bad = good.to_dict()
    bad["verdicts"][0]["outcome"] = "flaky"
    with pytest.raises(LabError, match=r"matrix.json does not match matrix.schema.json: verdicts\[0\]\.outcome"):
        results.write_json_atomic(path, bad, "matrix")
    assert path.read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["matrix.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    results.write_text_atomic(path, "old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(LabError, match=f"cannot write {re.escape(str(path))}: No space left on device"):
        results.write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(LabError, match="cannot write .*locked/x.txt"):
            results.write_text_atomic(locked / "x.txt", "data")
    finally:
        locked.chmod(0o700)


def test_permission_denied_names_the_path(tmp_path, monkeypatch):
    # Runs as root too (where chmod cannot make a directory unwritable).
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(results.tempfile, "mkstemp", denied)
    target = tmp_path / "run" / "matrix.json"
    with pytest.raises(LabError) as info:
        results.write_json_atomic(target, make_matrix(SPEC).to_dict(), "matrix")
    assert str(info.value) == f"cannot write {target}: Permission denied"


def test_parent_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(LabError, match=r"cannot write .*f/cells/x.json"):
        results.write_text_atomic(tmp_path / "f" / "cells" / "x.json", "{}")


def test_corrupt_json_names_file_and_position(tmp_path):
    run = results.new_run_dir(tmp_path)
    (run / "matrix.json").write_text('{\n  "schema": "zmqlab.matrix/1",\n    oops\n}\n')
    with pytest.raises(LabError) as info:
        results.load_matrix(run)
    assert str(info.value) == f"{run / 'matrix.json'} is not valid JSON: line 3 column 5"


def test_missing_results(tmp_path):
    with pytest.raises(LabError, match="no results directory"):
        results.load_matrix(tmp_path / "20990101-000000-0000")
    empty = results.new_run_dir(tmp_path)
    with pytest.raises(LabError, match="matrix.json does not exist"):
        results.load_matrix(empty)
    with pytest.raises(LabError, match="no finished runs"):
        results.latest_run_dir(tmp_path)


def test_wrong_schema_version_and_foreign_file(tmp_path):
    path = tmp_path / "matrix.json"
    data = make_matrix(SPEC).to_dict()
    results.write_text_atomic(path, json.dumps({**data, "schema": "zmqlab.matrix/2"}))
    with pytest.raises(LabError, match="is zmqlab.matrix/2, this lab reads zmqlab.matrix/1"):
        results.load_matrix(path)
    results.write_text_atomic(path, json.dumps([1, 2]))
    with pytest.raises(LabError, match="is not a zmqlab matrix file"):
        results.load_matrix(path)
    results.write_text_atomic(path, json.dumps(make_verdict(["ok"]).to_dict()))
    with pytest.raises(LabError, match="schema: 'zmqlab.verdict/1', expected zmqlab.matrix/1"):
        results.load_matrix(path)


def test_schema_mismatch_on_load(tmp_path):
    path = tmp_path / "matrix.json"
    data = make_matrix(SPEC).to_dict()
    del data["backend"]
    results.write_text_atomic(path, json.dumps(data))
    with pytest.raises(LabError, match="does not match matrix.schema.json: top level: 'backend' is a required"):
        results.load_matrix(path)


def test_tampered_verdict_file(tmp_path):
    run = results.new_run_dir(tmp_path)
    path = results.save_verdict(run, make_verdict(["lost", "ok"]))
    data = json.loads(path.read_text())
    data["failures"] = 0
    results.write_text_atomic(path, json.dumps(data))
    with pytest.raises(LabError, match=r"default.json: verdict .* says failures=0 but its runs give 1"):
        results.load_verdicts(run)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_corrupt_not_numbers(tmp_path, constant):
    run = tmp_path / "r"
    run.mkdir()
    results.save_matrix(run, make_matrix({("pyzmq-25.1.2", "pubsub", "tcp", "default"): ["lost", "ok"]}))
    text = (run / "matrix.json").read_text()
    (run / "matrix.json").write_text(re.sub(r'"rate": ?[0-9.]+', '"rate": ' + constant, text, count=1))
    with pytest.raises(LabError, match=f"not valid JSON: {constant} is not a JSON number"):
        results.load_matrix(run)


def test_a_saved_matrix_is_loaded_back_without_rereading_until_the_file_changes(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    m = make_matrix({("pyzmq-25.1.2", "pubsub", "tcp", "default"): ["lost", "ok"]})
    results.save_matrix(run, m, verdicts_checked=True)
    assert results.load_matrix(run) is m
    (run / "matrix.json").write_text((run / "matrix.json").read_text() + " ")
    again = results.load_matrix(run)            # changed on disk: read and checked again
    assert again is not m and again.to_dict() == m.to_dict()


def test_the_envelope_is_still_checked_when_the_verdicts_were(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    m = make_matrix({("pyzmq-25.1.2", "pubsub", "tcp", "default"): ["ok"]})
    import dataclasses
    bad = dataclasses.replace(m, created=5)
    with pytest.raises(LabError, match="does not match matrix.schema.json"):
        results.save_matrix(run, bad, verdicts_checked=True)
