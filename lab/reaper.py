"""The run's reaper: a small process that outlives the lab only to clean up after it.

A lab killed with SIGKILL cannot run its finally blocks, and its containers would keep running
until the next lab's orphan sweep. So the Docker backend starts this watcher at the start of a
run (in a session of its own, so a Ctrl-C meant for the lab does not reach it): it checks every
half second whether the lab that started it is still alive (pid, start time and host, as the
orphan sweep does), and once the lab is gone it removes everything labelled with the run's id
and exits. A lab that ends normally stops its reaper in close(). (testcontainers' Ryuk does the
same job for its own containers.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from lab import engine

POLL_S = 0.5


def spawn(run_id: str) -> subprocess.Popen:
    """Start the reaper of `run_id` for this process."""
    labels = engine.run_labels(run_id)
    return subprocess.Popen(
        [sys.executable, "-m", "lab.reaper", run_id, labels[engine.LABEL_PID], labels[engine.LABEL_PIDSTART]],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def stop(proc: subprocess.Popen | None) -> None:
    """The lab is closing normally: it cleans up itself, the reaper is not needed."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str]) -> int:
    run_id, pid, pidstart = argv
    owner = {engine.LABEL_PID: pid, engine.LABEL_PIDSTART: pidstart}
    while engine.owner_alive(owner):
        time.sleep(POLL_S)
    client = engine.connect()
    try:
        engine.remove_run(client, run_id)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
