"""Real scenarios in real pinned images through the Docker backend and the runner: the same
verdicts as locally, hung cells classified within stall + 1 s, and nothing left behind."""

import pytest

from lab import engine
from lab.cells import Cell
from lab.requests import RunSettings
from lab.runner import run_cell
from tests.conftest import docker_run

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_backend(engine_client, built_images):
    with docker_run(engine_client, "test-cells") as backend:
        yield backend, built_images


def test_draft_pin_runs_client_server_for_real(docker_backend):
    backend, targets = docker_backend
    target = targets["pyzmq-25.1.2-draft"]
    assert backend.prepare(target) is None
    for variant in ("shared", "per-thread"):
        verdict = run_cell(backend, target, Cell(target.name, "clientserver", "tcp", variant, threads=10, msgs=200),
                           RunSettings(repeat=2))
        assert verdict.worst == "ok", verdict.summary_line()
        assert verdict.versions == {"pyzmq": "25.1.2", "libzmq": "4.3.4", "draft": True,
                                    "python": verdict.versions["python"]}


def test_stock_pin_reports_client_server_unsupported(docker_backend):
    backend, targets = docker_backend
    target = targets["pyzmq-19.0.2"]          # Python 3.9 image: the harness runs there too
    assert backend.prepare(target) is None
    verdict = run_cell(backend, target, Cell(target.name, "clientserver", "inproc", threads=2, msgs=10),
                       RunSettings(repeat=3))
    assert verdict.worst == "unsupported" and "draft" in verdict.runs[0].reason
    assert verdict.runs[0].report["versions"]["python"].startswith("3.9")


def test_hung_cell_is_classified_within_stall_plus_one_and_its_container_goes(docker_backend, engine_client):
    backend, targets = docker_backend
    target = targets["pyzmq-25.1.2"]
    assert backend.prepare(target) is None
    verdict = run_cell(backend, target, Cell(target.name, "pair", "ipc", threads=1, msgs=1000),
                       RunSettings(repeat=2, stall=1.0))
    deadlocks = [r for r in verdict.runs if r.outcome == "deadlock"]
    assert deadlocks, verdict.summary_line()
    for r in deadlocks:
        assert 1.0 <= r.report["stall"]["since_progress_s"] <= 2.0
        assert r.report["classified_by"] == "watchdog"


def test_frozen_cell_is_killed_at_the_hard_timeout_and_the_next_cell_runs(docker_backend):
    backend, targets = docker_backend
    target = targets["pyzmq-27.3.0"]
    assert backend.prepare(target) is None
    frozen = run_cell(backend, target, Cell(target.name, "pushpull", "inproc", threads=2, msgs=50),
                      RunSettings(repeat=1, stall=0.5, timeout=3, extra=("--inject", "freeze")))
    rep = frozen.runs[0].report
    assert rep["outcome"] == "deadlock" and rep["classified_by"] == "lab"
    after = run_cell(backend, target, Cell(target.name, "pushpull", "tcp", threads=4, msgs=100), RunSettings(repeat=1))
    assert after.worst == "ok"


def test_release_removes_the_targets_container_and_a_later_run_starts_a_new_one(docker_backend, engine_client):
    backend, targets = docker_backend
    target = targets["pyzmq-25.1.2"]
    assert backend.prepare(target) is None
    cell = Cell(target.name, "pushpull", "inproc", threads=2, msgs=10)
    assert run_cell(backend, target, cell, RunSettings(repeat=1)).worst == "ok"
    mine = {"label": "%s=%s" % (engine.LABEL_RUN, backend.run_id)}
    assert len(engine_client.containers.list(all=True, filters=mine)) == 1
    backend.release(target)
    assert engine_client.containers.list(all=True, filters=mine) == []
    assert run_cell(backend, target, cell, RunSettings(repeat=1)).worst == "ok"
