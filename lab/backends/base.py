"""The narrow interface between the lab's pure core and the world that runs scenarios.

A backend makes a target runnable and runs `python -m scenarios ARGV` for it under a hard
timeout. Everything else (what to run, how to judge its runs) is the runner's business, so a
new backend (another container engine, two containers for sender and receiver roles) only
implements these few methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from lab.targets import Target


@dataclass(frozen=True)
class ProcessResult:
    """What one scenario process left behind."""
    stdout: str
    stderr: str
    returncode: int | None   # None when the lab had to kill it
    timed_out: bool          # True when the hard timeout fired and the lab killed it
    wall_s: float            # start to exit (or kill), as seen by the lab
    # An outside event that ended or spoiled the run (its container killed, paused past the
    # hard timeout or removed by someone else, an engine error mid-run), named; the run says
    # nothing about the target. None when nothing happened.
    infra: str | None = None
    paused_s: float = 0.0    # time someone else kept the run's container paused (in wall_s)
    pauses: tuple[tuple[float, float], ...] = ()   # when: (start, end) s since the run started
    container: str = ""      # where it ran, for the evidence ("" for a local process)


@dataclass(frozen=True)
class PeerResult:
    """What one run of the `containers` topology left behind: its two processes."""
    receiver: ProcessResult  # its stdout's last line is the run report
    sender: ProcessResult
    network: str             # the network the two talked over ("" on a backend without one)
    faults: tuple[dict, ...] = ()   # the faults applied meanwhile: lab.faults.FaultWindow dicts


class Backend(Protocol):
    name: str                # "local" or "docker"
    description: str         # one line shown on screen, e.g. "local processes (no Docker engine)"

    def prepare(self, target: Target) -> str | None:
        """Make `target` runnable (venv, image, container). Return None when ready,
        or a one-line reason why it is skipped on this backend (never raises for that)."""

    def run(self, target: Target, argv: Sequence[str], timeout: float,
            on_state: Callable[[str], None] | None = None) -> ProcessResult:
        """Run the scenario program with `argv` for `target`; kill it after `timeout` s.
        `on_state` hears, while it runs, when it goes idle or busy again (lab/slots.py); a
        backend that cannot tell never calls it (the run then keeps its slot)."""

    def run_peers(self, receiver: Target, sender: Target, argv: Sequence[str], timeout: float,
                  on_state: Callable[[str], None] | None = None, faults: Sequence[Any] = ()) -> PeerResult:
        """Run the scenario as a receiver container of `receiver` and a sender container of
        `sender` (may be the same target: still two containers), over tcp on the run's own
        network. `argv` are the cell's flags (they include `--topology containers --transport
        tcp`); the backend adds the role flags and the addresses. Both get the hard `timeout`."""

    def release(self, target: Target) -> None:
        """`target` has no more runs in this sweep: free what prepare() set up for it."""

    def close(self) -> None:
        """End and remove everything this backend started (processes, containers, files)."""
