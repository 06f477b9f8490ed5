"""The Docker side of the `containers` topology (docs/topology.md): one scenario run as two
peers, a receiver container and a sender container, talking tcp over a network of the run.

The network: one per backend run, made on first use: `zmqlab-<run-id>-net`, a bridge with
`internal=True` (no route out of it) and no IPv4 address of the host on its bridge
(lab.engine.PEER_NETWORK), so a peer reaches the other peers and nothing else, the host
included; no port is published. It carries the run's labels, so close(), the next
lab's orphan sweep and the run's reaper remove it (after the containers, which lab.engine
removes first). The peers get the sandbox of every lab container except that they join this
network (lab.engine.sandbox(network=...)).

The containers: long-lived and run through docker exec, as cells are in exec mode (whichever
mode the backend has), so a run costs two execs (~100 ms), not two container starts; one per
(target, role), role "rx" or "tx", apart from the target's network-less cell container. A
pair of one target is still two containers. Concurrent runs share them: each run takes its
own two ports (PORT_BASE + 2n, n a counter of the backend), so two runs never bind the same
port in one receiver container.

Both execs start together, each under the hard timeout and killed by its own token as a cell
is (lab/backends/docker.py); the sender waits for the receiver by itself (it says hello over
the report channel and retries), so nothing orders them here.
"""
from __future__ import annotations

import itertools
import re
import threading
from typing import TYPE_CHECKING, Any, Sequence

import docker.errors
import requests.exceptions

from lab import engine, slots
from lab.backends.base import PeerResult, ProcessResult
from lab.engine import PYTHON
from lab.errors import LabError
from lab.targets import Target

if TYPE_CHECKING:
    from lab.backends.docker import DockerBackend

ROLES = ("rx", "tx")
PORT_BASE = 20000          # the receiver binds P and P+1; below the kernel's ephemeral range ...
PORT_SLOTS = 20000         # ... and below 60000 after wrapping: P + 1 <= 59999
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class Refused(Exception):
    """A peer container would not take an exec (gone, stopped, paused); nothing has started."""

    def __init__(self, container: Any, error: BaseException):
        super().__init__(f"{container.name}: {engine.reason(error)}")
        self.container, self.error = container, error


def network_name(run_id: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"zmqlab-{run_id}-net")


def create_network(client: Any, name: str, labels: dict[str, str]) -> str:
    """Create the run's network (the lab's one retry policy); return its name."""
    try:
        engine.transient_retry(client.networks.create)(
            name, labels=labels, check_duplicate=True, **engine.PEER_NETWORK)
    except docker.errors.APIError as exc:
        # a try that timed out may have created it after all: the retry then meets it (409)
        if exc.status_code != 409:
            raise
        found = client.networks.get(name)
        if (found.attrs.get("Labels") or {}).get(engine.LABEL_RUN) != labels[engine.LABEL_RUN]:
            raise
    return name


def peer_commands(argv: Sequence[str], receiver_host: str, port: int) -> tuple[list[str], list[str]]:
    """The receiver's and the sender's command lines: the cell's flags, then the role flags
    and the addresses (pattern socket on `port`, report channel on `port` + 1)."""
    cell = [PYTHON, "-m", "scenarios", *map(str, argv)]
    return ([*cell, "--role", "receiver", "--bind", f"tcp://0.0.0.0:{port}",
             "--report-bind", f"tcp://0.0.0.0:{port + 1}"],
            [*cell, "--role", "sender", "--connect", f"tcp://{receiver_host}:{port}",
             "--report", f"tcp://{receiver_host}:{port + 1}"])


class Peers:
    """The DockerBackend's peers part (a mixin: it runs on the backend's containers and execs)."""

    def _init_peers(self: DockerBackend) -> None:
        self._peer_containers: dict[tuple[str, str], Any] = {}   # (target name, role) -> container
        self._network: str | None = None
        self._network_lock = threading.Lock()
        self._pairs = itertools.count()

    def _next_port(self) -> int:
        return PORT_BASE + 2 * (next(self._pairs) % PORT_SLOTS)   # count() is atomic under the GIL

    def _peer_network(self: DockerBackend) -> str:
        """The run's network, created on first use."""
        with self._network_lock:
            if self._network is None:
                name = network_name(self.run_id)
                try:
                    create_network(self.client, name, self.labels)
                except _ENGINE_ERRORS as exc:
                    raise self._engine_error(f"create the network {name}", exc) from None
                if self._closed:        # close() ran while we created: do not leak it
                    engine.remove_run(self.client, self.run_id, self.close_errors)
                    raise LabError("the docker backend is closed")
                self._network = name
            return self._network

    def _run_pair(self: DockerBackend, receiver: Target, sender: Target, argv: Sequence[str],
                  timeout: float, on_state: slots.OnState | None = None, fresh: bool = False) -> PeerResult:
        """run_peers() without the report's provenance."""
        rx = self._long_lived(receiver, "rx")
        tx = self._long_lived(sender, "tx")
        rx_cmd, tx_cmd = peer_commands(argv, rx.name, self._next_port())
        try:
            rx_res, tx_res = self._exec_pair(rx, tx, rx_cmd, tx_cmd, timeout, on_state)
        except Refused as refused:
            if fresh or self._closed:
                raise self._engine_error("create an exec", refused.error) from None
            # removed by hand, PID 1 killed, docker pause: once more in a fresh one (its new
            # name goes into the sender's addresses)
            self._discard(refused.container)
            return self._run_pair(receiver, sender, argv, timeout, on_state, fresh=True)
        return PeerResult(rx_res, tx_res, self._network or "")

    def _exec_pair(self: DockerBackend, rx: Any, tx: Any, rx_cmd: Sequence[str], tx_cmd: Sequence[str],
                   timeout: float, on_state: slots.OnState | None = None) -> tuple[ProcessResult, ProcessResult]:
        """Run `rx_cmd` in container `rx` and `tx_cmd` in `tx` at the same time, each under the
        hard `timeout`, each killed by its own token when it runs out. Raises Refused when a
        container would not take its exec (before either started). The receiver's idle/busy
        lines go to `on_state` (lab/slots.py): it is the side that judges the run."""
        execs = []
        for container, cmd in ((rx, rx_cmd), (tx, tx_cmd)):
            try:
                execs.append((container, *self._create_exec(container, cmd)))
            except docker.errors.APIError as exc:
                if engine.exec_refused(exc):
                    raise Refused(container, exc) from None
                raise self._engine_error("create an exec", exc) from None
            except _ENGINE_ERRORS as exc:
                raise self._engine_error("create an exec", exc) from None
        results: list[Any] = [None, None]

        def wait(i: int, container: Any, exec_id: str, token: str) -> None:
            try:
                results[i] = self._await_exec(container, exec_id, token, timeout,
                                              on_state if i == 0 else None)
            except BaseException as exc:        # re-raised in the caller's thread below
                results[i] = exc

        threads = [threading.Thread(target=wait, args=(i, *e), name=f"zmqlab-peer-{role}", daemon=True)
                   for i, (role, e) in enumerate(zip(ROLES, execs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results[0], results[1]
