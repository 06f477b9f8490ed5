"""lab.compare: the noise-aware cell-by-cell comparison (pure, synthetic matrices)."""
import pytest

from factories import make_matrix, make_verdict, make_cell
from lab import compare as cmp
from lab.errors import LabError
from lab.matrix import build
from lab.verdicts import wilson

A, B = "pyzmq-25.1.2", "pyzmq-27.3.0"


def one(base_outcomes, new_outcomes, pattern="pushpull", transport="tcp", **kw):
    base = make_matrix({(A, pattern, transport): base_outcomes}, run_id="base")
    new = make_matrix({(B, pattern, transport): new_outcomes}, run_id="new", **kw)
    [change] = cmp.compare(base, new).changes
    return change


def test_wilson_separation_needs_enough_runs():
    # The rule's premise: with 2 or 3 runs even 0/n vs n/n overlaps; with 5 it separates.
    assert wilson(2, 2)[0] < wilson(0, 2)[1]
    assert wilson(5, 5)[0] > wilson(0, 5)[1]


def test_clean_to_always_failing_is_worse():
    change = one(["ok"] * 5, ["lost"] * 5)
    assert change.status == "worse"
    assert change.reason.startswith("failed 0/5") and "5/5" in change.reason


def test_difference_inside_the_noise_is_unchanged():
    change = one(["ok"] * 4 + ["lost"], ["ok"] * 3 + ["lost"] * 2, pattern="pubsub")
    assert change.status == "unchanged"
    assert change.reason.startswith("within noise")
    # too few runs to tell even 0/2 from 2/2
    assert one(["ok"] * 2, ["lost"] * 2).status == "unchanged"


def test_more_severe_kind_at_the_same_rate_is_worse():
    change = one(["lost"] * 5, ["deadlock"] * 5, pattern="pubsub")
    assert change.status == "worse"
    assert change.reason.startswith("deadlock or worse 0/5")


def test_less_severe_kind_is_better_and_fixes_are_better():
    assert one(["deadlock"] * 5, ["lost"] * 5, pattern="pair").status == "better"
    assert one(["lost"] * 5, ["ok"] * 5, pattern="pubsub").status == "better"


def test_worse_wins_over_better():
    # fewer failures overall but deadlocks appear: a regression must not hide as a fix
    base = ["lost"] * 20
    new = ["deadlock"] * 8 + ["ok"] * 12
    change = one(base, new, pattern="pubsub")
    assert change.status == "worse"


def test_availability_changes():
    assert one(["ok"] * 5, ["unsupported"], pattern="clientserver", transport="inproc").status == "worse"
    assert one(["unsupported"], ["ok"] * 5, pattern="clientserver", transport="inproc").status == "better"
    assert one(["unsupported"], ["unsupported"], pattern="clientserver", transport="inproc").status == "unchanged"
    skipped = one(["ok"] * 5, "skipped")
    assert skipped.status == "not-compared" and "skipped in NEW" in skipped.reason


def test_different_sizes_are_not_compared():
    base = build("b", "local", [make_verdict(["ok"] * 5, make_cell(A, "pushpull", threads=4))])
    new = build("n", "local", [make_verdict(["lost"] * 5, make_cell(B, "pushpull", threads=8))])
    [change] = cmp.compare(base, new).changes
    assert change.status == "not-compared" and "different sizes" in change.reason


def test_match_by_column_across_targets_and_by_key_for_same_targets():
    spec = {(A, "pushpull", "tcp"): ["ok"] * 5, (A, "pair", "inproc"): ["deadlock"] * 5}
    other = {(B, "pushpull", "tcp"): ["ok"] * 5, (B, "pubsub", "tcp"): ["lost"] * 5}
    c = cmp.compare(make_matrix(spec, run_id="b"), make_matrix(other, run_id="n"))
    assert c.matched_by == "column"
    by_label = {ch.label: ch for ch in c.changes}
    assert by_label["pushpull/tcp/default"].status == "unchanged"
    assert by_label["pair/inproc/default"].reason == "only in BASE"
    assert by_label["pubsub/tcp/default"].reason == "only in NEW"
    assert c.exit_code == 0
    same = cmp.compare(make_matrix(spec, run_id="b"), make_matrix(spec, run_id="n"))
    assert same.matched_by == "key"
    assert {ch.label for ch in same.changes} == {f"{A}/pushpull/tcp/default", f"{A}/pair/inproc/default"}


def test_ambiguous_target_sets_are_one_line_errors():
    two = make_matrix({(A, "pushpull", "tcp"): ["ok"], (B, "pushpull", "tcp"): ["ok"]})
    one_target = make_matrix({("pyzmq-26.4.0", "pushpull", "tcp"): ["ok"]})
    with pytest.raises(LabError, match="cannot match cells") as exc:
        cmp.compare(two, one_target)
    assert "\n" not in str(exc.value)


def test_exit_code_and_renderings():
    base = make_matrix({(A, "pushpull", "tcp"): ["ok"] * 5, (A, "pubsub", "tcp"): ["lost"] * 5},
                       run_id="base")
    new = make_matrix({(B, "pushpull", "tcp"): ["lost"] * 5, (B, "pubsub", "tcp"): ["lost"] * 5},
                      run_id="new")
    c = cmp.compare(base, new)
    assert c.exit_code == 1 and c.tally() == {"worse": 1, "better": 0, "unchanged": 1, "not-compared": 0}
    text = cmp.table(c)
    assert text.splitlines()[0] == f"BASE {A} (run base) vs NEW {B} (run new)"
    worse_line = next(l for l in text.splitlines() if l.startswith("pushpull/tcp/default"))
    assert worse_line.split()[-1] == "WORSE"
    assert text.rstrip().endswith("1 got worse; 0 better, 1 unchanged, 0 not compared (2 cells)")
    md = cmp.markdown(c)
    assert "## Got worse (1)" in md and "| pushpull/tcp/default | ok 5/5 | LOST 5/5 |" in md
    assert "## Got better" not in md


def test_new_inconsistent_verdict_is_worse():
    from factories import make_reports
    from lab.verdicts import judge_runs
    cell = make_cell(B, "pushpull")
    bad = judge_runs(cell, make_reports(["ok"], cell) + make_reports(["ok"], cell, pattern="pair"))
    base = build("b", "local", [make_verdict(["ok"] * 5, make_cell(A, "pushpull"))])
    [change] = cmp.compare(base, build("n", "local", [bad])).changes
    assert change.status == "worse" and "inconsistent" in change.reason


def test_partial_runs_and_a_run_against_itself_are_called_out():
    v = make_verdict(["ok", "ok"])
    base = build("r1", "local", [v], params={"complete": False, "plan": [{}, {}]}, created="t1")
    new = build("r2", "local", [v], params={"complete": True}, created="t2")
    c = cmp.compare(base, new)
    assert c.notes == ("WARNING: BASE run r1 is PARTIAL (1 of 2 cells); cells it lacks are not compared",)
    assert c.notes[0] in cmp.table(c) and c.notes[0] in cmp.markdown(c)
    same = cmp.compare(new, new)
    assert same.notes == ("WARNING: BASE and NEW are the same run (r2): nothing can change",)


def test_a_cell_whose_runs_were_all_lost_to_the_infrastructure_is_not_compared():
    base = build("r1", "docker", [make_verdict(["infra", "infra"])], created="t1")
    new = build("r2", "docker", [make_verdict(["lost", "lost"])], created="t2")
    [change] = cmp.compare(base, new).changes
    assert change.status == "not-compared" and "every run was lost to the infrastructure" in change.reason


# ---- topologies and the rolling upgrade's mixed pairs --------------------------------------------

def containers(receiver, pattern="pushpull", sender=""):
    from lab.cells import Cell
    return Cell(receiver, pattern, "tcp", threads=4, msgs=50, topology="containers", sender=sender)


def test_topologies_are_compared_only_with_themselves():
    base = build("b", "docker", [make_verdict(["ok"] * 5, make_cell(A, "pushpull")),
                                 make_verdict(["ok"] * 5, containers(A))], created="t1")
    new = build("n", "docker", [make_verdict(["ok"] * 5, make_cell(B, "pushpull")),
                                make_verdict(["lost"] * 5, containers(B))], created="t2")
    c = cmp.compare(base, new)
    assert c.matched_by == "column" and not c.rolling
    assert {ch.label: ch.status for ch in c.changes} == {"pushpull/tcp/default": "unchanged",
                                                        "pushpull/tcp/default@containers": "worse"}


def test_a_rolling_upgrades_mixed_pairs_are_judged_against_base_own_pairs():
    """NEW holds B -> B and the mixed A -> B, B -> A: each mixed pair is compared with BASE's
    A -> A of its column (the fleet it replaces); the threads cells compare as ever."""
    base = build("b", "docker", [make_verdict(["ok"] * 5, make_cell(A, "pubsub")),
                                 make_verdict(["ok"] * 5, containers(A, "pubsub")),
                                 make_verdict(["ok"] * 5, containers(A))], created="t1")
    new = build("n", "docker", [make_verdict(["ok"] * 5, make_cell(B, "pubsub")),
                                make_verdict(["ok"] * 5, containers(B, "pubsub")),
                                make_verdict(["ok"] * 5, containers(B)),
                                make_verdict(["lost"] * 5, containers(B, "pubsub", sender=A)),
                                make_verdict(["ok"] * 5, containers(A, "pubsub", sender=B)),
                                make_verdict(["ok", "lost", "ok", "ok", "ok"], containers(B, sender=A))], created="t2")
    c = cmp.compare(base, new)
    assert c.matched_by == "column" and (c.base_target, c.new_target) == (A, B)
    plain = {ch.label: ch.status for ch in c.changes if not ch.pair}
    assert plain == {"pubsub/tcp/default": "unchanged", "pubsub/tcp/default@containers": "unchanged",
                     "pushpull/tcp/default@containers": "unchanged"}
    mixed = {(ch.label, ch.pair): ch for ch in c.rolling}
    assert set(mixed) == {("pubsub/tcp/default@containers", f"{A}>{B}"), ("pubsub/tcp/default@containers", f"{B}>{A}"),
                          ("pushpull/tcp/default@containers", f"{A}>{B}")}
    worse = mixed[("pubsub/tcp/default@containers", f"{A}>{B}")]
    assert worse.status == "worse" and worse.base.key == f"{A}/pubsub/tcp/default@containers"
    assert mixed[("pushpull/tcp/default@containers", f"{A}>{B}")].reason.startswith("within noise")
    assert c.exit_code == 1 and c.tally()["worse"] == 1
    text = cmp.table(c)
    assert f"rolling upgrade (mixed pairs): each pair of {A} and {B} in two containers, judged against {A} -> {A}" \
        in text
    line = next(ln for ln in text.splitlines() if f"{A}>{B}" in ln and ln.startswith("pubsub"))
    assert line.split() == ["pubsub/tcp/default@containers", f"{A}>{B}", "ok", "5/5", "LOST", "5/5", "WORSE"]
    assert text.rstrip().endswith("1 got worse; 0 better, 5 unchanged, 0 not compared (6 cells)")
    md = cmp.markdown(c)
    assert "## Rolling upgrade (mixed pairs) (3)" in md
    assert f"| pubsub/tcp/default@containers | {A}>{B} | ok 5/5 | LOST 5/5 | WORSE |" in md
    assert "## Got worse" not in md            # the worse pair is in its own section, not twice


def test_comparisons_without_pairs_render_as_before():
    base = make_matrix({(A, "pushpull", "tcp"): ["ok"] * 5}, run_id="base")
    new = make_matrix({(B, "pushpull", "tcp"): ["ok"] * 5}, run_id="new")
    c = cmp.compare(base, new)
    assert not c.rolling and "rolling" not in cmp.table(c) and "Rolling" not in cmp.markdown(c)


def test_two_interop_runs_of_the_same_pins_match_pair_by_pair():
    cells = [containers(A), containers(B, sender=A), containers(A, sender=B), containers(B)]
    base = build("b", "docker", [make_verdict(["ok"] * 5, c) for c in cells], created="t1")
    new = build("n", "docker", [make_verdict(["lost"] * 5 if c.sender == A else ["ok"] * 5, c) for c in cells],
                created="t2")
    c = cmp.compare(base, new)
    assert c.matched_by == "key" and not c.rolling
    assert [ch.label for ch in c.worse] == [f"{A}>{B}/pushpull/tcp/default@containers"]


def _with_image(m, image_id):
    """The matrix `m` with every run's provenance naming `image_id` (as a Docker run records)."""
    for v in m.verdicts:
        for run in v.runs:
            run.report["provenance"] = {"image": image_id, "recipe": "r", "scenarios": "sha256:" + "0" * 64,
                                        "engine": {"id": "E", "version": "20.10", "remote": False}}
    return m


def test_different_images_of_the_same_pin_are_said_once_per_pin():
    spec = {(A, "pushpull", "tcp"): ["ok"] * 5, (A, "pubsub", "tcp"): ["ok"] * 5}
    base = _with_image(make_matrix(spec, run_id="base"), "sha256:" + "a" * 64)
    same = _with_image(make_matrix(spec, run_id="new"), "sha256:" + "a" * 64)
    rebuilt = _with_image(make_matrix(spec, run_id="new"), "sha256:" + "b" * 64)
    assert cmp.different_images(base, same) == []
    c = cmp.compare(base, rebuilt)
    lines = [n for n in c.notes if "different images" in n]
    assert lines == [f"NOTE: {A} ran in different images: BASE {'a' * 12}, NEW {'b' * 12} "
                     "(two builds of the same pin; see the runs' provenance)"]
    assert lines[0] in cmp.table(c) and lines[0] in cmp.markdown(c)
    # local runs (no provenance) say nothing
    assert cmp.different_images(make_matrix(spec, run_id="x"), rebuilt) == []


# ---- fault cells: judged against libzmq's promise (lab/expectations.py) -------------------------

def fault_pair(base_runs, base_judged, new_runs, new_judged, **kw):
    """One fault cell of A in two runs (matched by key): (Change, Comparison)."""
    from factories import make_fault_verdict
    base = build("b", "docker", [make_fault_verdict(base_runs, base_judged, **kw)], created="t1")
    new = build("n", "docker", [make_fault_verdict(new_runs, new_judged, **kw)], created="t2")
    c = cmp.compare(base, new)
    [change] = c.changes
    return change, c


def test_a_fault_cell_turning_unexpected_is_worse_at_the_same_outcome():
    change, c = fault_pair(["lost"] * 5, ["expected"] * 5, ["lost"] * 5, ["expected"] * 3 + ["unexpected"] * 2)
    assert change.status == "worse" and c.exit_code == 1
    # one readable line: the judgements, the promise with its source's id, why the first odd run was odd
    assert change.reason == ("fault judged expected 5/5 -> expected 3/5, unexpected 2/5 against "
                             "reset-pushpull: bounded-loss, by design: 3 lost outside the fault window")
    assert "\n" not in change.reason
    text = cmp.table(c)
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{A}/pushpull/tcp/default~reset-rx-1-1@containers"))
    assert line.split()[1:] == ["LOST", "5/5", "exp", "LOST", "5/5", "UNEXP", "WORSE"]
    assert "    " + change.reason in text.splitlines()
    # the rates alone saw nothing: without the judgements this pair is the same
    assert cmp._judge_rates(change.base, change.new)[0] == "unchanged"


def test_a_by_design_loss_judged_expected_is_not_a_regression():
    change, c = fault_pair(["ok"] * 5, ["expected"] * 5, ["lost"] * 5, ["expected"] * 5)
    assert cmp._judge_rates(change.base, change.new)[0] == "worse"     # what the rates say
    assert change.status == "unchanged" and c.exit_code == 0
    assert change.reason == ("by design: failed 0/5 [0%–43%] -> 5/5 [57%–100%], every run judged expected "
                             "(reset-pushpull: bounded-loss, by design)")
    assert "    " + change.reason in cmp.table(c).splitlines()         # said, though unchanged


def test_the_promise_excuses_nothing_it_does_not_cover():
    # a promise of NO loss (push-pause-short, by_design false): loss judged expected is still worse
    change, _ = fault_pair(["ok"] * 5, ["expected"] * 5, ["lost"] * 5, ["expected"] * 5, fault="pause:rx@1+1")
    assert change.new.fault.scenario_id == "push-pause-short" and change.status == "worse"
    # no promise at all: the rates decide
    change, _ = fault_pair(["ok"] * 5, ["no-promise"] * 5, ["lost"] * 5, ["no-promise"] * 5, promise=False)
    assert change.new.fault.scenario_id is None and change.status == "worse"
    # BASE already had unexpected runs: not "stays expected", the rates decide
    change, _ = fault_pair(["ok"] * 5, ["expected"] * 4 + ["unexpected"], ["lost"] * 5, ["expected"] * 5)
    assert change.status == "worse"
    # BASE whose fault was never applied: nothing to turn unexpected from
    change, _ = fault_pair(["lost"] * 5, ["not-applied"] * 5, ["lost"] * 5, ["unexpected"] * 5)
    assert change.status == "unchanged"


def test_a_side_without_a_judgement_is_compared_on_its_rates():
    from factories import make_fault_verdict
    new = make_fault_verdict(["lost"] * 5, ["expected"] * 5)
    old = cmp.Side.of(make_fault_verdict(["ok"] * 5, ["expected"] * 5))
    old = cmp.Side(**{**old.__dict__, "fault": None})          # as a baseline from before fault records
    assert cmp.judge(old, cmp.Side.of(new))[0] == "worse"
    assert old.text() == "ok 5/5" and cmp.Side.of(new).text() == "LOST 5/5 exp"
