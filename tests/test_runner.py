"""lab.runner's pure logic with fake backends: how a containers cell is run (run_peers, the
receiver's report, the sender's output attached), skipped where the backend has no peers, the
order pins are prepared and released, cells at once. No Docker: this is not evidence that
Docker works (tests/test_interop.py is)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from factories import make_report
from lab import results, runner
from lab.backends.base import ProcessResult
from lab.cells import Cell
from lab.errors import LabError
from lab.requests import RunSettings
from lab.targets import load_targets, select

A, B = "pyzmq-25.1.2", "pyzmq-26.4.0"
try:
    from lab.backends.base import PeerResult
except ImportError:        # run_peers' result, as lab/backends/base.py defines it (the runner duck-types it)
    from collections import namedtuple
    PeerResult = namedtuple("PeerResult", "receiver sender network")
PINS = {t.name: t for t in select(load_targets(), [A, B])}


def out(report: dict) -> ProcessResult:
    return ProcessResult(json.dumps(report) + "\n", "", 0, False, 0.2)


class Fake:
    """Records what it is asked; answers each run with `answer(cell, argv)`."""
    name = "fake"

    def __init__(self, answer=None, peers=True, delay=0.0):
        self.calls, self.prepared, self.released = [], [], []
        self.answer, self.delay, self.closed = answer, delay, False
        self.running = self.most = 0
        self.lock = threading.Lock()
        if not peers:
            self.run_peers = self._refuse

    def prepare(self, target):
        self.prepared.append(target.name)
        return None

    def _enter(self):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1

    def run(self, target, argv, timeout, on_state=None):
        self.calls.append(("run", target.name, list(argv), timeout))
        self._enter()
        return out(make_report("ok", _cell_of(target.name, argv)))

    def run_peers(self, receiver, sender, argv, timeout, on_state=None, faults=()):
        self.calls.append(("peers", receiver.name, sender.name, list(argv), timeout))
        self._enter()
        if self.answer:
            return self.answer(receiver, sender, argv)
        cell = _cell_of(receiver.name, argv, sender.name)
        return PeerResult(out(make_report("ok", cell, topology="containers")),
                          ProcessResult('{"schema": "zmqlab.sender/1"}\n', "", 0, False, 0.2), "zmqlab-net")

    def _refuse(self, receiver, sender, argv, timeout, on_state=None, faults=()):
        raise LabError("the containers topology needs a Docker engine; local processes can run --topology processes")

    def release(self, target):
        self.released.append(target.name)

    def close(self):
        self.closed = True


def _cell_of(target: str, argv, sender: str = "") -> Cell:
    a = list(argv)
    topology = a[a.index("--topology") + 1] if "--topology" in a else "threads"
    return Cell(target, a[a.index("--pattern") + 1], a[a.index("--transport") + 1],
                threads=int(a[a.index("--threads") + 1]), msgs=int(a[a.index("--msgs") + 1]), topology=topology,
                sender=sender if topology == "containers" else "")


def containers(receiver=B, sender=A, pattern="pushpull"):
    return Cell(receiver, pattern, "tcp", threads=2, msgs=5, topology="containers", sender=sender)


def test_a_containers_cell_runs_through_run_peers_with_five_more_seconds():
    backend, settings = Fake(), RunSettings(repeat=2)
    cell = containers()
    verdict = runner.run_cell(backend, PINS[B], cell, settings, sender=PINS[A])
    assert verdict.worst == "ok" and verdict.n == 2 and not verdict.problems
    kinds = {c[0] for c in backend.calls}
    assert kinds == {"peers"}
    _, receiver, sender, argv, timeout = backend.calls[0]
    assert (receiver, sender) == (B, A) and argv[argv.index("--topology") + 1] == "containers"
    plain = Cell(B, "pushpull", "tcp", threads=2, msgs=5)
    assert timeout == settings.hard_timeout(plain) + 5.0


def test_processes_and_threads_cells_run_through_run():
    backend = Fake()
    cell = Cell(A, "pushpull", "ipc", threads=2, msgs=5, topology="processes")
    assert runner.run_cell(backend, PINS[A], cell, RunSettings(repeat=1)).worst == "ok"
    assert backend.calls[0][0] == "run" and "--topology" in backend.calls[0][2]


def test_without_peers_the_cell_is_skipped_with_the_backends_reason():
    verdict = runner.run_cell(Fake(peers=False), PINS[B], containers(), RunSettings(repeat=3), sender=PINS[A])
    assert verdict.worst == "skipped" and verdict.n == 0 and not verdict.failed
    assert verdict.skip_reason == "the containers topology needs a Docker engine; local processes can run " \
                                  "--topology processes"

    class Old:                       # a backend from before run_peers existed
        name = "old"
    verdict = runner.run_cell(Old(), PINS[B], containers(), RunSettings(repeat=1), sender=PINS[A])
    assert verdict.skip_reason == "the old backend cannot run a receiver and a sender container"


def test_the_senders_own_output_is_attached_when_its_account_never_arrived():
    cell = containers()

    def answer(receiver, sender, argv):
        report = make_report("deadlock", cell, topology="containers")
        report["peers"] = [{"role": "sender", "account": "none"}]
        doc = {"schema": "zmqlab.sender/1", "account": {"stacks": {"sender-0": "File x, in send"}}}
        return PeerResult(out(report), ProcessResult(json.dumps(doc) + "\n", "Fatal Python error: frozen", None, True,
                                                     30.0), "net")
    verdict = runner.run_cell(Fake(answer), PINS[B], cell, RunSettings(repeat=1), sender=PINS[A])
    run = verdict.runs[0]
    assert run.outcome == "deadlock"
    assert run.report["stall"]["stacks"]["sender: sender-0"] == "File x, in send"
    assert "Fatal Python error" in run.report["stall"]["stacks"]["sender stderr"]
    assert run.peers[0]["own"] == {"stacks": {"sender-0": "File x, in send"}}


def test_a_sender_container_lost_from_outside_is_infra_and_run_again():
    cell, calls = containers(), []

    def answer(receiver, sender, argv):
        calls.append(1)
        if len(calls) == 1:
            return PeerResult(out(make_report("deadlock", cell, topology="containers")),
                              ProcessResult("", "", None, False, 3.0, infra="container tx was killed from outside"),
                              "net")
        return PeerResult(out(make_report("ok", cell, topology="containers")), ProcessResult("", "", 0, False, 1), "net")
    verdict = runner.run_cell(Fake(answer), PINS[B], cell, RunSettings(repeat=1), sender=PINS[A])
    assert [r.outcome for r in verdict.runs] == ["infra", "ok"] and verdict.worst == "ok"
    assert verdict.runs[0].reason.startswith("the sender's container tx was killed from outside")


def test_a_dead_receiver_is_classified_by_the_lab_naming_both_pins():
    cell = containers()

    def answer(receiver, sender, argv):
        return PeerResult(ProcessResult("", "boom", None, True, 30.0), ProcessResult("", "", 0, False, 1), "net")
    verdict = runner.run_cell(Fake(answer), PINS[B], cell, RunSettings(repeat=1), sender=PINS[A])
    assert verdict.worst == "deadlock" and verdict.runs[0].classified_by == "lab"
    assert f"[target {B} pins pyzmq 26.4.0" in verdict.runs[0].reason and f"sender {A}" in verdict.runs[0].reason


def test_a_grid_prepares_every_pin_and_releases_each_after_its_last_use(tmp_path):
    backend = Fake()
    cells = [containers(A, ""), containers(A, B), containers(B, A), containers(B, "")]
    built = runner.run_matrix(backend, [PINS[A], PINS[B]], cells, RunSettings(repeat=1), tmp_path, {},
                              runner.Progress(4))
    assert sorted(backend.prepared) == [A, B]            # once each, the sender's too
    assert backend.released == [A, B] and backend.closed
    assert [(c[1], c[2]) for c in backend.calls] == [(A, A), (A, B), (B, A), (B, B)]   # receiver by receiver
    assert built.rows == (A, B, f"{B}>{A}", f"{A}>{B}")
    assert [v.cell.key for v in built.verdicts] == [cells[i].key for i in (0, 3, 1, 2)]   # row by row
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == sorted(
        results.cell_file_name(c.key) for c in cells)


def test_cells_at_once(tmp_path):
    backend = Fake(delay=0.2)
    cells = [containers(r, s, p) for r in (A, B) for s in (A, B) for p in ("pushpull", "pair")]
    started = time.monotonic()
    built = runner.run_matrix(backend, [PINS[A], PINS[B]], cells, RunSettings(repeat=1), tmp_path, {},
                              runner.Progress(len(cells)), jobs=4)
    assert time.monotonic() - started < 0.2 * len(cells) / 2      # at least twice as fast as one by one
    assert backend.most == 4 and len(built.verdicts) == len(cells) and built.params["complete"] is True
    assert backend.released == [] and backend.closed      # every container up until the end


def test_an_error_in_a_cell_at_once_ends_the_run_keeping_what_finished(tmp_path):
    cell_ok, cell_bad = containers(A, B), containers(B, A)

    def answer(receiver, sender, argv):
        if receiver.name == B:
            raise RuntimeError("a bug")
        return PeerResult(out(make_report("ok", cell_ok, topology="containers")), ProcessResult("", "", 0, False, 1),
                          "net")
    backend = Fake(answer)
    with pytest.raises(RuntimeError, match="a bug"):
        runner.run_matrix(backend, [PINS[A], PINS[B]], [cell_ok, cell_bad], RunSettings(repeat=1), tmp_path, {},
                          runner.Progress(2), jobs=2)
    kept = json.loads((tmp_path / "matrix.json").read_text())
    assert kept["params"]["complete"] is False and backend.closed


def test_extend_run_adds_cells_to_a_finished_run(tmp_path):
    backend = Fake()
    threads = Cell(A, "pushpull", "tcp", threads=2, msgs=5)
    runner.run_matrix(backend, [PINS[A]], [threads], RunSettings(repeat=1), tmp_path, {"repeat": 1},
                      runner.Progress(1))
    more = runner.run_cell(Fake(), PINS[A], containers(A, B), RunSettings(repeat=1), sender=PINS[B])
    built = runner.extend_run(tmp_path, [more], "docker")
    assert [v.cell.key for v in built.verdicts] == [threads.key, containers(A, B).key]
    assert built.params["complete"] is True and len(built.params["plan"]) == 2 and built.backend == "fake+docker"
    again = results.load_matrix(tmp_path)
    assert again.get(containers(A, B).key).worst == "ok"


# ---- faults: the backend applies them; the runner judges the windows it gets back ------------

def _fault_cell():
    from lab.faults import parse
    return Cell(B, "pushpull", "tcp", threads=2, msgs=5, topology="containers", sender=A,
                fault=parse("partition:receiver@1+1"))


def test_a_fault_cells_windows_are_judged_and_put_on_the_timeline():
    cell = _fault_cell()
    seen = {}

    def answer(receiver, sender, argv, faults=()):
        seen["faults"] = faults
        report = make_report("ok", cell, topology="containers")
        t0 = 1_700_000_000_000_000_000
        report["timeline"] = {"t0_ns": t0, "threads": [], "events": [], "monitor": "on"}
        report["pings"] = {"clock": "receiver", "threads": [
            {"id": i, "sent_ns": [t0 + k * 10**8 for k in range(5)], "recv_ns": [t0 + k * 10**8 + 10**5 for k in range(5)]}
            for i in range(2)]}
        window = {"kind": "partition", "target": "receiver", "label": "partition:rx@1+1", "start_ns": t0 + 10**9,
                  "end_ns": t0 + 2 * 10**9, "undone": True, "detail": "iptables", "error": None}
        return PeerResult(out(report), ProcessResult("", "", 0, False, 0.2), "net", (window,))

    class WithFaults(Fake):
        def run_peers(self, receiver, sender, argv, timeout, on_state=None, faults=()):
            return answer(receiver, sender, argv, faults)

    verdict = runner.run_cell(WithFaults(), PINS[B], cell, RunSettings(repeat=1, stall=5.0), sender=PINS[A])
    assert seen["faults"] == (cell.fault,)
    report = verdict.runs[0].report
    assert report["fault"]["judged"] in ("expected", "unexpected", "no-promise")
    assert report["fault"]["outcome"]["lost_inside"] == 0
    edges = [(e["event"], e["t_ms"]) for e in report["timeline"]["events"]]
    assert edges == [("FAULT_START", 1000.0), ("FAULT_END", 2000.0)]
    assert "; fault: " in verdict.summary_line()


def test_a_fault_the_kernel_cannot_make_is_an_unsupported_run():
    from lab.faults import FaultUnsupported

    class NoNetem(Fake):
        def run_peers(self, receiver, sender, argv, timeout, on_state=None, faults=()):
            raise FaultUnsupported("partition needs iptables; iptables: no such table")
    verdict = runner.run_cell(NoNetem(), PINS[B], _fault_cell(), RunSettings(repeat=3, stall=5.0), sender=PINS[A])
    assert verdict.worst == "unsupported" and len(verdict.runs) == 1
    assert "no such table" in verdict.runs[0].reason


def test_an_exec_that_exits_0_with_no_output_is_the_engines_loss_and_is_run_again():
    cell = Cell(A, "pushpull", "tcp", threads=2, msgs=5)
    calls = []

    class Lossy(Fake):
        def run(self, target, argv, timeout, on_state=None):
            calls.append(1)
            if len(calls) == 1:
                return ProcessResult("", "", 0, False, 0.1, container="zmqlab-x")
            return ProcessResult(out(make_report("ok", cell)).stdout, "", 0, False, 0.1, container="zmqlab-x")
    verdict = runner.run_cell(Lossy(), PINS[A], cell, RunSettings(repeat=1))
    assert len(calls) == 2 and verdict.worst == "ok" and verdict.infra == 1
    assert "docker-py#2042" in verdict.runs[0].reason
