"""How many runs are busy at once (`--jobs`): a run holds a slot while it works and gives it
back while it only waits.

`--jobs N` is advice about cores: more busy runs than cores change what a race does. But a
deadlocked run spends its whole stall window (2 s by default) blocked inside libzmq, and a
full sweep has hundreds of them: holding a slot through that wait left the cores idle for
most of a sweep's length. So the scenario program tells the lab (when $ZMQLAB_RUN_STATE is
set: scenarios/harness.py announce_idle) that its receiver has seen no progress for a
quarter second, and again when it moves; the backend passes those lines to `on_state`
(and keeps them out of the run's stderr). An idle run frees its slot; a run that moves again
takes it back, even past N for a moment, and no new run starts until the count is under N.
The number of runs alive at once is bounded by the runner's workers (N × SPARE_WORKERS).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

# scenarios/harness.py's STATE_ENV and STATE_LINE (the lab does not import the harness: it
# needs pyzmq); tests/test_slots.py checks they agree.
STATE_ENV = "ZMQLAB_RUN_STATE"
STATE_PREFIX = "zmqlab-run-state: "
# mark: the receiver's K-th ping (a fault after K pings); bound: the receiver is bound, the run's t0
# (a fault at T seconds counts from there)
STATES = ("idle", "busy", "mark", "bound")
SPARE_WORKERS = 4          # runs alive per slot: the idle ones wait beside the busy one

OnState = Callable[[str], None]


class Slots:
    """At most `jobs` busy runs; see the module's docstring."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.busy = 0
        self.peak_alive = 0          # for the bench: how far idle runs overlapped
        self._alive = 0
        self._cond = threading.Condition()

    @contextmanager
    def run(self) -> Iterator[OnState]:
        """Wait for a slot; yield the run's on_state callback; give the slot back at its end."""
        idle = False
        with self._cond:
            while self.busy >= self.jobs:
                self._cond.wait()
            self.busy += 1
            self._alive += 1
            self.peak_alive = max(self.peak_alive, self._alive)

        def on_state(state: str) -> None:
            nonlocal idle
            with self._cond:
                if state == "idle" and not idle:
                    idle = True
                    self.busy -= 1
                    self._cond.notify()
                elif state == "busy" and idle:
                    idle = False
                    self.busy += 1
        try:
            yield on_state
        finally:
            with self._cond:
                if not idle:
                    self.busy -= 1
                self._alive -= 1
                self._cond.notify()


class StateLines:
    """Picks the state lines out of a run's stderr as it arrives, in chunks cut anywhere."""

    def __init__(self, on_state: OnState | None):
        self.on_state = on_state
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        if self.on_state is None or not chunk:
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            state = state_of(line.decode("utf-8", "replace"))
            if state:
                self.on_state(state)


def state_of(line: str) -> str | None:
    """'idle' or 'busy' for a state line, None for any other stderr line."""
    if line.startswith(STATE_PREFIX):
        state = line[len(STATE_PREFIX):].strip()
        return state if state in STATES else None
    return None


def strip(stderr: str) -> str:
    """The run's stderr without the state lines (they are the lab's, not evidence)."""
    if STATE_PREFIX not in stderr:
        return stderr
    return "".join(ln for ln in stderr.splitlines(keepends=True) if state_of(ln) is None)
