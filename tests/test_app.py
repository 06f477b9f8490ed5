"""The user-facing edges: one-line errors for bad input, Ctrl-C mid-matrix, corrupt files."""
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]


def invoke(*args, **kw):
    return subprocess.run([*INVOKE, *args], cwd=REPO, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("args,needle", [
    (["scenario", "--pattern", "foo", "--backend", "local"], "unknown pattern 'foo'"),
    (["scenario", "--transport", "udp", "--backend", "local"], "unknown transport 'udp'"),
    (["scenario", "--target", "pyzmq-0.0", "--backend", "local"], "unknown target 'pyzmq-0.0'"),
    (["scenario", "--threads", "0", "--backend", "local"], "threads must be at least 1"),
    (["scenario", "--msgs", "-1", "--backend", "local"], "msgs must be at least 1"),
    (["matrix", "--out", "/proc/zmqlab-nope", "--backend", "local"], "cannot create results directory"),
    (["scenario", "--backend", "podman"], "unknown backend 'podman'"),
    (["scenario", "--stall", "nan", "--backend", "local"], "--stall must be a finite number"),
    (["scenario", "--stall", "inf", "--backend", "local"], "--stall must be a finite number"),
    (["scenario", "--timeout", "-5", "--backend", "local"], "--timeout must be a positive number"),
    (["scenario", "--inject", "drop:9999", "--backend", "local"], "outside the run's threads/msgs"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    proc = invoke(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_bad_backend_leaves_no_results_directory(tmp_path):
    proc = invoke("matrix", "--backend", "podman", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown backend" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_engine_is_one_line():
    proc = invoke("scenario", "--backend", "docker", env=dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock"))
    assert proc.returncode == 2
    assert "no Docker engine answers at unix:///nonexistent.sock" in proc.stderr and "--backend local" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_results_file_is_one_line_and_left_alone(tmp_path):
    run = tmp_path / "20260101-000000-abcd"
    run.mkdir()
    (run / "matrix.json").write_text('{"schema": "zmqlab.matrix/1", "verdicts": [')
    before = (run / "matrix.json").read_bytes()
    proc = invoke("report", "--results", str(run))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "matrix.json").read_bytes() == before


def _scenario_processes():
    """Scenario processes of the local backend (their python lives in its venvs); scenarios
    inside containers of other runs are not ours to count."""
    from lab.backends.local import venv_root
    ours = str(venv_root()).encode()
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            argv = Path(cmdline).read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].startswith(ours) and b"scenarios" in argv and b"-m" in argv:
            found.append(argv)
    return found


@pytest.mark.slow
def test_ctrl_c_mid_matrix_keeps_what_finished_and_leaves_nothing(tmp_path):
    before_tmp = set(glob.glob("/tmp/zmqlab-run-*"))
    proc = subprocess.Popen([*INVOKE, "matrix", "--backend", "local", "--targets", "pyzmq-25.1.2",
                             "--patterns", "pair", "--transports", "inproc,ipc,tcp", "--poll", "off",
                             "--sync", "none", "--repeat", "3", "--threads", "4", "--msgs", "50",
                             "--out", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    cells = []
    while time.monotonic() < deadline and not cells:      # one pair cell judged, the next running
        cells = glob.glob(str(tmp_path / "*" / "cells" / "*.json"))
        time.sleep(0.1)
    assert cells, "no cell finished in time"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    run_dir = Path(cells[0]).parents[1]
    kept = json.loads((run_dir / "matrix.json").read_text())
    assert kept["params"]["complete"] is False
    assert [v["key"] for v in kept["verdicts"]] == ["pyzmq-25.1.2/pair/inproc/default"]
    assert _scenario_processes() == []
    assert set(glob.glob("/tmp/zmqlab-run-*")) <= before_tmp


def test_reproduce_judges_a_saved_run_again_without_running_anything(tmp_path):
    """`reproduce --judged DIR` reads the verdicts a reproduce run saved and writes its report
    again (with the explanations of today): one disagreement makes the exit status 1."""
    from lab import app, results
    from lab import reproduce as rep
    from lab.verdicts import judge_runs
    from tests.factories import make_report
    claims = {c.title: c for c in rep.CLAIMS}
    works, fails = claims["PUSH/PULL 100×1000"], claims["PAIRs 1×1000"]
    few, many = claims["PUB/SUB 10×1000 -poll"], claims["PUB/SUB 100×1000 -poll"]   # one key, two sizes
    for claim, outcome in ((works, "ok"), (fails, "ok"), (few, "ok"), (many, "lost")):
        cell = claim.cell("pyzmq-25.1.2")                # PAIR 'ok': contradicts the write-up
        results.save_verdict(tmp_path, judge_runs(cell, [make_report(outcome, cell) for _ in range(3)]), sized=True)
    published = tmp_path / "published.md"
    request = app.ReproduceRequest.from_cli("all", 10, 2.0, "local", str(tmp_path), str(published),
                                            str(tmp_path), 1.0)
    outcome = app.reproduce(request)
    assert outcome.code == 1
    text = published.read_text()
    assert text == (tmp_path / "reproduce.md").read_text()
    assert "## PAIRs 1×1000" in text and "**DISAGREE**" in text and "- runs per configuration: 3" in text
    assert "## PUB/SUB 10×1000 -poll" in text and "## PUB/SUB 100×1000 -poll" in text   # both sizes kept
    assert "AGREE    pyzmq-25.1.2" in outcome.text and "DISAGREE pyzmq-25.1.2" in outcome.text
    from lab.cells import Cell
    from lab.errors import LabError
    (tmp_path / "other").mkdir()
    tcp = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=4, msgs=50)     # not a write-up configuration
    results.save_verdict(tmp_path / "other", judge_runs(tcp, [make_report("ok", tcp)]))
    with pytest.raises(LabError, match="no verdict of a write-up configuration"):
        app.reproduce(app.ReproduceRequest.from_cli("all", 10, 2.0, "local", str(tmp_path), None,
                                                    str(tmp_path / "other"), 1.0))


@pytest.mark.slow
def test_kill_9_mid_matrix_then_resume_runs_only_the_missing_cells(tmp_path):
    """A lab killed with SIGKILL leaves matrix.json (written from the start, complete: false)
    and the verdicts it finished; `matrix --resume` runs only the rest, with the run's own
    parameters, and the finished run has exactly the cells of an uninterrupted one."""
    args = ["matrix", "--backend", "local", "--targets", "pyzmq-25.1.2", "--patterns", "pushpull,pair",
            "--transports", "inproc,tcp", "--poll", "off", "--repeat", "1", "--threads", "2", "--msgs", "20",
            "--stall", "0.5", "--out", str(tmp_path)]
    proc = subprocess.Popen([*INVOKE, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    cells = []
    while time.monotonic() < deadline and len(cells) < 2:
        cells = glob.glob(str(tmp_path / "*" / "cells" / "*.json"))
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(cells) >= 2, "no cells finished in time"
    run_dir = Path(cells[0]).parents[1]
    partial = json.loads((run_dir / "matrix.json").read_text())
    assert partial["params"]["complete"] is False and len(partial["params"]["plan"]) == 4
    before = {p.name: p.read_bytes() for p in (run_dir / "cells").iterdir()}
    assert len(before) < 4, "the lab finished before it was killed"
    gate = invoke("baseline", "--results", str(run_dir), "--path", str(tmp_path / "b.json"))
    assert gate.returncode == 2 and "partial run" in gate.stderr
    done = invoke("matrix", "--resume", str(run_dir), "--backend", "local")
    assert done.returncode == 0, done.stderr
    assert "Resuming" in done.stderr and f"{4 - len(before)} of 4 cells left" in done.stderr
    after = {p.name: p.read_bytes() for p in (run_dir / "cells").iterdir()}
    assert all(after[name] == data for name, data in before.items())      # finished cells untouched
    whole = json.loads((run_dir / "matrix.json").read_text())
    assert whole["params"]["complete"] is True
    assert sorted(v["key"] for v in whole["verdicts"]) == sorted(
        "pyzmq-25.1.2/%s/%s/default" % (p, t) for p in ("pair", "pushpull") for t in ("inproc", "tcp"))
    assert whole["params"]["threads"] == 2 and whole["params"]["stall"] == 0.5


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_verdict(tmp_path, monkeypatch, capsys):
    """ENOSPC while saving a verdict: a one-line LabError naming the directory, and the verdict
    that could not be written is printed whole on stderr first (nothing collected is lost)."""
    import errno
    from lab import results, runner
    from lab.cells import Cell
    from lab.requests import RunSettings
    from tests.factories import make_report
    from lab.backends.base import ProcessResult

    class Backend:
        name = "fake"

        def prepare(self, target):
            return None

        def run(self, target, argv, timeout, on_state=None):
            return ProcessResult(json.dumps(make_report("ok", cell)) + "\n", "", 0, False, 0.1)

        def release(self, target):
            pass

        def close(self):
            pass

    from lab.targets import load_targets, select
    target = select(load_targets(), "pyzmq-25.1.2")
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", threads=4, msgs=50)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    real = results.save_verdict
    monkeypatch.setattr(results, "save_verdict", full)
    with pytest.raises(runner.LabError, match=r"cannot write to .*run: No space left on device; the verdict "
                                              r"of pyzmq-25.1.2/pubsub/tcp/default is printed above"):
        runner.run_matrix(Backend(), target, [cell], RunSettings(repeat=1), run_dir, {})
    printed = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert printed["key"] == cell.key and printed["outcome"] == "ok"
    monkeypatch.setattr(results, "save_verdict", real)
    # the final matrix.json (written when the disk had room again) still holds the verdict
    assert [v["key"] for v in json.loads((run_dir / "matrix.json").read_text())["verdicts"]] == [cell.key]


# ---- interop and the rolling upgrade, through the app with a fake backend ------------------------

def _fake_docker(monkeypatch, backend, engine_ok=True):
    from lab import app, engine
    monkeypatch.setattr(engine, "available", lambda: (engine_ok, "" if engine_ok else "no socket at /x"))
    monkeypatch.setattr(app, "choose_backend", lambda name, run_id, targets: backend)

    def open_run(out, name, targets):
        from lab import results
        return results.new_run_dir(out), backend
    monkeypatch.setattr(app, "open_run", open_run)


def test_interop_writes_the_grid_beside_the_matrix(tmp_path, monkeypatch):
    from lab import app
    from test_runner import Fake
    _fake_docker(monkeypatch, Fake())
    request = app.InteropRequest.from_cli("pyzmq-25.1.2,pyzmq-26.4.0", "pushpull,pubsub", "none,xpub", "off", 2, 5, 1,
                                          2.0, 0.0, "auto", str(tmp_path), 2)
    outcome = app.interop_grid(request)
    [run_dir] = list(tmp_path.iterdir())
    assert {p.name for p in run_dir.iterdir()} >= {"matrix.json", "matrix.md", "cells", "interop.md", "interop.json",
                                                  "interop.html"}
    assert len(list((run_dir / "cells").iterdir())) == 4 * 3
    assert outcome.code == 0 and "pubsub+xpub" in outcome.text and "odd cells" in outcome.text
    assert json.loads((run_dir / "matrix.json").read_text())["params"]["interop"] == ["pyzmq-25.1.2", "pyzmq-26.4.0"]


def test_interop_without_an_engine_is_one_line(tmp_path, monkeypatch):
    from lab import app
    from test_runner import Fake
    _fake_docker(monkeypatch, Fake(), engine_ok=False)
    request = app.InteropRequest.from_cli("pyzmq-25.1.2", "pair", "none", "off", 2, 5, 1, 2.0, 0.0, "auto",
                                          str(tmp_path), 1)
    with pytest.raises(app.LabError, match="interop runs every pair in two containers and needs a Docker engine: "
                                           "no socket at /x"):
        app.interop_grid(request)
    assert list(tmp_path.iterdir()) == []


def _pair_dirs(tmp_path, base_outcomes, new_outcomes):
    """Two finished upgrade-check run directories of threads cells (what sweep.run_pair leaves)."""
    from lab import matrix, render, results
    from lab.verdicts import judge_runs
    from tests.factories import make_cell, make_reports
    dirs = []
    for target, outcomes in (("pyzmq-25.1.2", base_outcomes), ("pyzmq-26.4.0", new_outcomes)):
        run_dir = results.new_run_dir(tmp_path)
        cell = make_cell(target, "pushpull", threads=2, msgs=5)
        v = judge_runs(cell, make_reports(outcomes, cell))
        results.save_verdict(run_dir, v)
        built = matrix.build(run_dir.name, "docker", [v], params={"threads": 2, "msgs": 5, "repeat": 5,
                             "plan": [cell.to_dict()], "complete": True}, targets=[target], created="t")
        results.save_matrix(run_dir, built)
        results.write_text_atomic(run_dir / "matrix.md", render.markdown(built))
        dirs.append(run_dir)
    return dirs


def test_upgrade_check_runs_the_rolling_upgrade_and_a_worse_mixed_pair_fails_it(tmp_path, monkeypatch):
    from lab import app, sweep
    from lab.backends.base import ProcessResult
    from test_runner import Fake, PeerResult, _cell_of, out
    from tests.factories import make_report
    base_dir, new_dir = _pair_dirs(tmp_path, ["ok"] * 5, ["ok"] * 5)
    monkeypatch.setattr(sweep, "run_pair", lambda request: (base_dir, new_dir))

    def answer(receiver, sender, argv):      # the mixed pubsub pair 25.1.2 -> 26.4.0 loses, all else is fine
        cell = _cell_of(receiver.name, argv, sender.name)
        bad = cell.pattern == "pubsub" and cell.sender == "pyzmq-25.1.2"
        return PeerResult(out(make_report("lost" if bad else "ok", cell, topology="containers")),
                          ProcessResult("", "", 0, False, 0.1), "net")
    _fake_docker(monkeypatch, Fake(answer))
    request = app.PairRequest.from_cli("pyzmq-25.1.2", "pyzmq-26.4.0", 2, 5, 5, 2.0, "auto", str(tmp_path), None,
                                       patterns="pushpull,pubsub", rolling=True)
    outcome = app.upgrade_check(request)
    assert outcome.code == 1
    assert "rolling upgrade (mixed pairs)" in outcome.text
    worse = next(ln for ln in outcome.text.splitlines() if "pyzmq-25.1.2>pyzmq-26.4.0" in ln and "pubsub" in ln)
    assert worse.split()[-1] == "WORSE"
    keys = {p.name for p in (new_dir / "cells").iterdir()}
    assert "pyzmq-25.1.2>pyzmq-26.4.0__pubsub__tcp__default@containers.json" in keys and len(keys) == 1 + 2 * 3
    assert len(list((base_dir / "cells").iterdir())) == 1 + 2
    # compare of the same directories later says the same
    again = app.compare(app.PairRequest.for_compare(str(base_dir), str(new_dir), 2, 5, 5, 2.0, "local", "results", None))
    assert again.code == 1 and again.text == outcome.text


def test_upgrade_check_without_an_engine_notes_the_rolling_upgrade_was_not_run(tmp_path, monkeypatch):
    from lab import app, sweep
    from test_runner import Fake
    base_dir, new_dir = _pair_dirs(tmp_path, ["ok"] * 5, ["ok"] * 5)
    monkeypatch.setattr(sweep, "run_pair", lambda request: (base_dir, new_dir))
    _fake_docker(monkeypatch, Fake(), engine_ok=False)
    request = app.PairRequest.from_cli("pyzmq-25.1.2", "pyzmq-26.4.0", 2, 5, 5, 2.0, "auto", str(tmp_path), None,
                                       rolling=True)
    outcome = app.upgrade_check(request)
    assert outcome.code == 0
    assert "rolling upgrade (mixed pairs): not run: no Docker engine (no socket at /x)" in outcome.text
