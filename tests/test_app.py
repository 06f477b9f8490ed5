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
