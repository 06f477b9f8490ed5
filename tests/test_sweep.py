"""The sweep workflow run locally, task by task, as .github/workflows/sweep.yml runs it:
plan -> one sweep-run per target (LOCAL backend, wheel targets, tiny sizes) -> merge -> gate.
Races are probabilistic, so equality with a plain `matrix` run is checked on deterministic
cells (PUSH/PULL ok, CLIENT/SERVER unsupported without drafts); regressions are made with
--inject faults."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import results

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("pyzmq-25.1.2", "pyzmq-27.3.0")
TINY = ["--threads", "2", "--msgs", "5", "--stall", "1", "--backend", "local"]


def invoke(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} -> {result.returncode}\n{result.stderr[-2000:]}")
    return result


def shape(matrix):
    return {v.cell.key: v.worst for v in matrix.verdicts}


@pytest.mark.slow
def test_sweep_sequence_matches_a_plain_matrix_run(tmp_path):
    plan = json.loads(invoke("sweep-plan", "--targets", ",".join(TARGETS)).stdout)
    assert plan == {"include": [{"target": t} for t in TARGETS]}
    for entry in plan["include"]:
        invoke("sweep-run", "--target", entry["target"], "--out", str(tmp_path / "parts" / entry["target"]),
               "--patterns", "pushpull,clientserver", "--repeat", "1", *TINY)
    merged_dir = Path(invoke("sweep-merge", str(tmp_path / "parts"), "--out", str(tmp_path / "merged"))
                      .stdout.strip())
    invoke("matrix", "--targets", ",".join(TARGETS), "--patterns", "pushpull,clientserver",
           "--transports", "all", "--poll", "both", "--sync", "none", "--repeat", "1",
           "--out", str(tmp_path / "plain"), *TINY)
    merged = results.load_matrix(merged_dir)
    plain = results.load_matrix(results.latest_run_dir(tmp_path / "plain"))
    assert shape(merged) == shape(plain)
    assert len(merged.verdicts) == 24
    assert set(shape(merged).values()) == {"ok", "unsupported"}
    assert merged.params["merged_from"] and merged.rows == TARGETS

    # The gate, against a baseline refreshed from the plain run: nothing changed -> exit 0.
    baseline = tmp_path / "expected.json"
    invoke("baseline", "--results", str(results.latest_run_dir(tmp_path / "plain")), "--path", str(baseline))
    gate = invoke("sweep-gate", "--results", str(tmp_path / "merged"), "--baseline", str(baseline))
    assert "nothing got worse; 0 better, 24 unchanged, 0 not compared (24 cells)" in gate.stdout

    # Reports from the merged directory.
    invoke("report", "--results", str(tmp_path / "merged"), "--html", "--junit")
    assert (merged_dir / "report.html").stat().st_size > 1000
    assert 'tests="24"' in (merged_dir / "junit.xml").read_text()


@pytest.mark.slow
def test_injected_regression_fails_the_gate_and_compare(tmp_path):
    target, cells = TARGETS[0], ["--patterns", "pushpull", "--transports", "inproc", "--repeat", "5"]
    clean = invoke("sweep-run", "--target", target, "--out", str(tmp_path / "clean"), *cells, *TINY).stdout.strip()
    broken = invoke("sweep-run", "--target", target, "--out", str(tmp_path / "broken"), *cells, *TINY,
                    "--inject", "drop:3").stdout.strip()
    baseline = tmp_path / "expected.json"
    invoke("baseline", "--results", clean, "--path", str(baseline))
    gate = invoke("sweep-gate", "--results", broken, "--baseline", str(baseline), check=False)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "2 got worse" in gate.stdout and "WORSE" in gate.stdout
    md = tmp_path / "cmp.md"
    cmp = invoke("compare", clean, broken, "--markdown", str(md), check=False)
    assert cmp.returncode == 1 and "## Got worse (2)" in md.read_text()
    assert invoke("compare", broken, clean, check=False).returncode == 0    # the fix is "better"


@pytest.mark.slow
def test_upgrade_check_runs_both_targets_on_the_same_cells(tmp_path):
    out = invoke("upgrade-check", "--from", TARGETS[0], "--to", TARGETS[1], "--patterns", "pushpull",
                 "--transports", "inproc,tcp", "--poll", "off", "--repeat", "2", "--max-repeat", "4",
                 "--out", str(tmp_path), *TINY, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"BASE {TARGETS[0]}" in out.stdout and "0 better, 2 unchanged" in out.stdout
    runs = sorted(p for p in tmp_path.iterdir() if (p / "matrix.json").is_file())
    assert len(runs) == 2
    assert {v.cell.column for v in results.load_matrix(runs[0]).verdicts} == \
        {v.cell.column for v in results.load_matrix(runs[1]).verdicts}


def test_bad_inputs_are_one_line_errors_with_exit_2(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "matrix.json").write_text('{"schema": "zmqlab.matrix/9"}')
    for args, message in (
        (("compare", str(tmp_path / "missing"), str(tmp_path / "missing")), "neither a results directory"),
        (("compare", str(tmp_path), str(tmp_path)), "is zmqlab.matrix/9, this lab reads zmqlab.matrix/1"),
        (("report", "--results", str(tmp_path / "empty-but-missing")), "no results directory"),
        (("sweep-merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")), "no results directory"),
        (("sweep-plan", "--targets", "no-such-target"), "no-such-target"),
    ):
        result = invoke(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("zmqlab: error:") and message in lines[0], lines
    assert not (tmp_path / "m").exists()          # nothing written on bad input


class FakeBackend:
    """Scripted runs: target -> list of outcomes handed out in turn (cycling)."""
    name = "fake"
    description = "scripted"

    def __init__(self, script):
        self.script, self.calls = script, {t: 0 for t in script}

    def prepare(self, target):
        return None

    def run(self, target, argv, timeout, on_state=None):
        import json as json_
        from factories import make_cell, make_report
        from lab.backends.base import ProcessResult
        outcomes = self.script[target.name]
        outcome = outcomes[self.calls[target.name] % len(outcomes)]
        self.calls[target.name] += 1
        arg = dict(zip(argv[::2], argv[1::2]))
        cell = make_cell(target.name, arg["--pattern"], arg["--transport"], threads=int(arg["--threads"]),
                         msgs=int(arg["--msgs"]))
        report = make_report(outcome, cell, versions={"pyzmq": "1", "libzmq": "4", "draft": False,
                                                      "python": "3.11"}, stall_s=2.0, sleep=0.0)
        return ProcessResult(json_.dumps(report) + "\n", "", 0, False, 0.1)

    def close(self):
        pass


def test_run_pair_adds_runs_only_while_the_noise_decides(tmp_path):
    from lab import compare as cmp
    from lab import sweep
    from lab.requests import PairRequest

    def request(max_repeat):
        return PairRequest.from_cli(TARGETS[0], TARGETS[1], 2, 5, 5, 2.0, "local", str(tmp_path), None,
                                    "pushpull", "inproc", "off", max_repeat)

    def opener(fake):
        return lambda out, backend, targets: (results.new_run_dir(out), fake)
    # 25.1.2 clean; 27.3.0 loses in every other run: 0/5 vs 3/5 overlaps, so runs are added
    # in steps of 5 until the intervals separate or each side has max_repeat runs.
    fake = FakeBackend({TARGETS[0]: ["ok"], TARGETS[1]: ["lost", "ok"]})
    base, new = sweep.run_pair(request(20), open_run=opener(fake))
    [b] = results.load_matrix(base).verdicts
    [n] = results.load_matrix(new).verdicts
    # 0/5 vs 3/5 and 0/10 vs 5/10 overlap; 0/15 [0-20%] vs 8/15 [30-75%] separates
    assert (b.n, n.n) == (15, 15)
    assert (b.failures, n.failures) == (0, 8)
    assert cmp.compare(results.load_matrix(base), results.load_matrix(new)).exit_code == 1
    # with a cap of 5, nothing is added and the difference stays inside the noise
    fake2 = FakeBackend({TARGETS[0]: ["ok"], TARGETS[1]: ["lost", "ok"]})
    base, new = sweep.run_pair(request(5), open_run=opener(fake2))
    assert fake2.calls == {TARGETS[0]: 5, TARGETS[1]: 5}
    assert cmp.compare(results.load_matrix(base), results.load_matrix(new)).exit_code == 0
