import pytest

from factories import make_cell, make_matrix, make_verdict, target_rows
from lab.errors import LabError
from lab.matrix import Matrix, TargetRow, build, merge
from lab.schemas import validate
from lab.targets import parse_pins

SPEC = {
    ("pyzmq-26.4.0", "pubsub", "tcp", "default", True): ["ok"] * 3,
    ("pyzmq-25.1.2", "pubsub", "tcp", "default", False): ["lost", "ok", "lost"],
    ("pyzmq-25.1.2", "pair", "inproc"): ["deadlock"],
    ("pyzmq-26.4.0", "clientserver", "ipc", "per-thread"): ["unsupported"],
    ("pyzmq-27.3.0", "pair", "inproc"): "skipped",
}


def test_rows_follow_pin_order_and_columns_canonical_order():
    m = make_matrix(SPEC, targets=["pyzmq-25.1.2", "pyzmq-26.4.0", "pyzmq-27.3.0"])
    assert m.rows == ("pyzmq-25.1.2", "pyzmq-26.4.0", "pyzmq-27.3.0")
    assert m.columns == (("pair", "inproc", "default"), ("pubsub", "tcp", "default"),
                         ("pubsub", "tcp", "default+poll"), ("clientserver", "ipc", "per-thread"))
    assert [v.cell.target for v in m.verdicts] == ["pyzmq-25.1.2"] * 2 + ["pyzmq-26.4.0"] * 2 + ["pyzmq-27.3.0"]


def test_lookup_get_row_and_tally():
    m = make_matrix(SPEC)
    assert m.lookup("pyzmq-25.1.2", ("pubsub", "tcp", "default")).worst == "lost"
    assert m.lookup("pyzmq-27.3.0", ("pubsub", "tcp", "default")) is None
    assert m.get("pyzmq-25.1.2/pair/inproc/default").worst == "deadlock"
    assert m.get("nope/pair/inproc/default") is None
    assert [v.worst if v else None for v in m.row("pyzmq-26.4.0")] == [None, None, "ok", "unsupported"]
    tally = m.tally()
    assert (tally["ok"], tally["lost"], tally["deadlock"], tally["unsupported"], tally["skipped"]) == (1, 1, 1, 1, 1)
    assert m.worst == "deadlock"
    assert {v.cell.key for v in m.failed} == {"pyzmq-25.1.2/pubsub/tcp/default", "pyzmq-25.1.2/pair/inproc/default"}


def test_row_versions_prefer_measured_then_pinned():
    m = build("r", "local", [make_verdict("skipped", target="pyzmq-27.3.0")],
              targets=[TargetRow("pyzmq-27.3.0", "27.3.0", "4.3.5", False), TargetRow("other", "1", "2", True)])
    assert m.row_versions("pyzmq-27.3.0").libzmq == "4.3.5"      # pinned: nothing ran
    assert m.row_versions("other").draft is True
    assert m.rows == ("pyzmq-27.3.0", "other")                    # a row with no verdicts still shows
    measured = build("r", "local", [make_verdict(["ok"], target="pyzmq-25.1.2")],
                     targets=[TargetRow("pyzmq-25.1.2", "25.1.2", "9.9.9", False)])
    assert measured.row_versions("pyzmq-25.1.2").libzmq == "4.3.4"


def test_build_accepts_pinned_targets_and_rejects_duplicates():
    pins = parse_pins('[[target]]\nname="pyzmq-25.1.2"\nkind="wheel"\npyzmq="25.1.2"\nlibzmq="4.3.4"\n'
                      'draft=false\nsuite="bookworm"\npython="3.11"\n')
    m = build("r", "local", [make_verdict(["ok"])], targets=pins)
    assert m.targets == (TargetRow("pyzmq-25.1.2", "25.1.2", "4.3.4", False),)
    with pytest.raises(LabError, match="appears twice"):
        build("r", "local", [make_verdict(["ok"]), make_verdict(["lost"])])


def test_round_trip_and_schema():
    m = make_matrix(SPEC, threads=4, stall=5.0)
    data = m.to_dict()
    validate("matrix", data)
    again = Matrix.from_dict(data)
    assert again == m
    assert again.to_dict() == data
    assert again.params["stall"] == 5.0


def test_matrix_schema_rejects_bad_verdicts_inside():
    data = make_matrix(SPEC).to_dict()
    data["verdicts"][1]["outcome"] = "flaky"
    with pytest.raises(LabError, match=r"verdicts\[1\]\.outcome"):
        validate("matrix", data, source="m.json")


def _per_target(target, outcomes, run_id, created):
    return build(run_id, "docker", [make_verdict(outcomes, target=target)],
                 params={"runs": len(outcomes), "targets": [target]}, targets=target_rows([target]),
                 created=created)


def test_merge_per_target_matrices():
    a = _per_target("pyzmq-25.1.2", ["lost", "ok"], "20261127-100000-aaaa", "2026-11-27T10:00:00Z")
    b = _per_target("pyzmq-26.4.0", ["ok", "ok"], "20261127-100500-bbbb", "2026-11-27T10:05:00Z")
    m = merge([b, a])
    assert m.rows == ("pyzmq-26.4.0", "pyzmq-25.1.2")          # first matrix's rows first
    assert len(m.verdicts) == 2 and m.backend == "docker"
    assert m.run_id == "20261127-100500-bbbb" and m.created == "2026-11-27T10:05:00Z"
    assert m.params["targets"] == ["pyzmq-26.4.0", "pyzmq-25.1.2"]
    assert m.params["merged_from"] == ["20261127-100500-bbbb", "20261127-100000-aaaa"]
    validate("matrix", m.to_dict())
    assert merge([m, a]).params["merged_from"] == ["20261127-100500-bbbb", "20261127-100000-aaaa"]
    assert merge([a, a], run_id="x").verdicts == a.verdicts  # identical verdicts are not a conflict


def test_merge_conflicts():
    a = _per_target("pyzmq-25.1.2", ["lost", "ok"], "A", "1")
    b = _per_target("pyzmq-25.1.2", ["ok", "ok"], "B", "2")
    with pytest.raises(LabError, match="pyzmq-25.1.2/pubsub/tcp/default is lost in run A but ok in run B"):
        merge([a, b])
    c = _per_target("pyzmq-26.4.0", ["ok"], "C", "3")
    with pytest.raises(LabError, match="parameter runs is 2 in one run and 1 in run C"):
        merge([a, c])
    d = build("D", "docker", [], params={"runs": 2}, targets=[TargetRow("pyzmq-25.1.2", "x", "y", True)])
    with pytest.raises(LabError, match="target pyzmq-25.1.2 is pinned differently in run D"):
        merge([a, d])
    with pytest.raises(LabError, match="nothing to merge"):
        merge([])


def test_empty_matrix():
    m = build("r", "local", [], targets=["t"])
    assert m.columns == () and m.worst is None and m.rows == ("t",)
    validate("matrix", m.to_dict())
    assert make_cell().column in make_matrix(SPEC).columns


def test_pairs_of_two_pins_have_rows_of_their_own_and_schema_valid_verdicts():
    """A -> B shares its receiver B and its column with B -> B, yet is another cell: its row is
    'A>B'. Topology cells validate (the verdict schema knows topology and sender)."""
    from lab.cells import Cell
    a, b = "pyzmq-25.1.2", "pyzmq-26.4.0"
    cells = [Cell(b, "pushpull", "tcp", threads=4, msgs=50, topology="containers"),
             Cell(b, "pushpull", "tcp", threads=4, msgs=50, topology="containers", sender=a),
             Cell(b, "pushpull", "tcp", threads=4, msgs=50)]
    m = build("r", "docker", [make_verdict(["lost"] if c.sender else ["ok"], c) for c in cells],
              targets=target_rows([a, b]))
    assert m.rows == (a, b, f"{a}>{b}")
    col = ("pushpull", "tcp", "default@containers")
    assert m.columns == (("pushpull", "tcp", "default"), col)
    assert m.lookup(b, col).worst == "ok" and m.lookup(f"{a}>{b}", col).worst == "lost"
    assert m.get(f"{a}>{b}/pushpull/tcp/default@containers").cell.sender == a
    validate("matrix", m.to_dict())
    assert Matrix.from_dict(m.to_dict()) == m
