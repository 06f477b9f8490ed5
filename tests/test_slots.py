"""lab/slots.py: `--jobs` counts busy runs; a run that says it is idle frees its slot."""
import re
import threading
from pathlib import Path

import pytest

from lab import slots
from lab.slots import Slots, StateLines, state_of, strip
from tests.conftest import docker_run

ROOT = Path(__file__).resolve().parents[1]
# block-sender: a control thread blocks in its send for good, a deadlock every time
DEADLOCK = ["--pattern", "pushpull", "--transport", "inproc", "--threads", "2", "--msgs", "20",
            "--sleep", "0", "--stall", "1", "--inject", "block-sender", "--quiet"]


def test_the_lab_and_the_harness_agree_on_the_state_lines():
    source = (ROOT / "scenarios" / "harness.py").read_text()
    assert re.search(r'STATE_ENV = "%s"' % slots.STATE_ENV, source)
    line = re.search(r'STATE_LINE = "([^"%]*)%s', source).group(1)
    assert line == slots.STATE_PREFIX


def test_state_lines_are_found_across_chunks_and_kept_out_of_stderr():
    seen = []
    lines = StateLines(seen.append)
    for chunk in (b"warn", b"ing\nzmqlab-run-st", b"ate: idle\nzmqlab-run-state: busy", b"\nzmqlab-run-state: odd\n"):
        lines.feed(chunk)
    assert seen == ["idle", "busy"]
    assert state_of("zmqlab-run-state: idle\n") == "idle" and state_of("idle") is None
    assert strip("a\nzmqlab-run-state: idle\nb\n") == "a\nb\n"
    StateLines(None).feed(b"zmqlab-run-state: idle\n")      # no listener: nothing happens


def test_an_idle_run_lets_another_start_and_a_busy_one_takes_its_slot_back():
    pace = Slots(1)
    order, seen = [], {}
    idle_said, second_in, first_busy = threading.Event(), threading.Event(), threading.Event()

    def first():
        with pace.run() as on_state:
            order.append("first starts")
            on_state("idle")
            idle_said.set()
            second_in.wait(5)
            on_state("busy")                 # moving again: the count goes past jobs ...
            seen["busy while both run"] = pace.busy
            first_busy.set()

    def second():
        idle_said.wait(5)
        with pace.run():
            order.append("second starts")
            second_in.set()
            first_busy.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first starts", "second starts"]
    assert seen == {"busy while both run": 2}
    assert pace.busy == 0 and pace.peak_alive == 2


def test_without_an_idle_line_a_slot_is_held_to_the_end():
    pace = Slots(1)
    entered = threading.Event()

    def another():
        with pace.run():
            entered.set()

    with pace.run():
        t = threading.Thread(target=another)
        t.start()
        assert not entered.wait(0.3)         # jobs=1 and the first run is busy: it waits
    t.join(5)
    assert entered.is_set() and pace.busy == 0


def _two_deadlocks(run):
    """Two deadlocking runs under one slot: both were alive at once only if the first one's
    idle line freed the slot while it waited out its stall window."""
    pace, results = Slots(1), []

    def one():
        with pace.run() as on_state:
            results.append(run(on_state))
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return pace, results


def test_a_local_deadlock_goes_idle_and_its_stderr_keeps_no_state_line(local):
    backend, target = local
    pace, results = _two_deadlocks(lambda on_state: backend.run(target, DEADLOCK, 20, on_state=on_state))
    assert pace.peak_alive == 2, results
    for res in results:
        assert '"outcome": "deadlock"' in res.stdout, res.stdout[-500:]
        assert slots.STATE_PREFIX not in res.stderr


@pytest.mark.docker
def test_a_deadlock_in_a_container_goes_idle_through_the_exec_stream(engine_client, built_images):
    target = built_images["pyzmq-25.1.2"]
    with docker_run(engine_client, "test-slots") as backend:
        assert backend.prepare(target) is None
        pace, results = _two_deadlocks(lambda on_state: backend.run(target, DEADLOCK, 20, on_state=on_state))
    assert pace.peak_alive == 2, results
    for res in results:
        assert '"outcome": "deadlock"' in res.stdout, res.stdout[-500:]
        assert slots.STATE_PREFIX not in res.stderr
