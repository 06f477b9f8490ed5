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

Faults (lab/faults.py, docs/faults.md): a cell's fault is applied to its peer's container by
the backend's one FaultInjector (lab/backends/faults.py) from a thread of the run (FaultTimer),
at its time after the receiver bound (its "bound" state line), and undone after its duration or as soon as both
processes ended; the windows (host clock, which on one machine is the receiver's) come back
in PeerResult.faults. A fault the engine's kernel cannot make is refused before the run
starts (FaultUnsupported: the run is `unsupported` with the probe's reason). close() undoes
whatever is still applied before it removes the containers.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import docker.errors
import requests.exceptions

from lab import engine, slots
from lab.backends.base import PeerResult, ProcessResult
from lab.engine import PYTHON
from lab.errors import LabError
from lab.faults import SHORT, Fault
from lab.targets import Target
from scenarios.flags import RECEIVER_CONNECTS

if TYPE_CHECKING:
    from lab.backends.faults import FaultInjector
    from lab.backends.docker import DockerBackend

ROLES = ("rx", "tx")
KILL_GRACE_S = 5.0         # how long a killed peer's exec may take to report its end
PORT_BASE = 20000          # the receiver binds P and P+1; below the kernel's ephemeral range ...
PORT_SLOTS = 20000         # ... and below 60000 after wrapping: P + 1 <= 59999
SENDER_PORT_BASE, SENDER_PORT_END = 20000, 60000    # pub-binds: the sender container's own range
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


def peer_commands(argv: Sequence[str], receiver_host: str, port: int, sender_host: str = "",
                  sender_port: int = 0) -> tuple[list[str], list[str]]:
    """The receiver's and the sender's command lines: the cell's flags, then the role flags
    and the addresses (pattern socket on `port`, report channel on `port` + 1; with
    `sender_port`, the pub-binds layout: the sender's sockets bind from there, one port each)."""
    cell = [PYTHON, "-m", "scenarios", *map(str, argv)]
    rx = [*cell, "--role", "receiver", "--bind", f"tcp://0.0.0.0:{port}", "--report-bind", f"tcp://0.0.0.0:{port + 1}"]
    tx = [*cell, "--role", "sender", "--connect", f"tcp://{receiver_host}:{port}",
          "--report", f"tcp://{receiver_host}:{port + 1}"]
    if sender_port:
        rx += ["--sender-at", f"tcp://{sender_host}:{sender_port}"]
        tx += ["--sender-bind", f"tcp://0.0.0.0:{sender_port}"]
    return rx, tx


def sender_sockets(argv: Sequence[str]) -> int:
    """How many ports the sender binds: threads + 1 (the shutdown's) in a layout where the
    receiver connects (scenarios/flags.py RECEIVER_CONNECTS), else none."""
    argv = [str(a) for a in argv]
    if "--variant" not in argv or argv[argv.index("--variant") + 1] not in RECEIVER_CONNECTS:
        return 0
    return int(argv[argv.index("--threads") + 1]) + 1


def _not_applied(fault: Fault, why: str) -> dict:
    """The window of a fault that never took effect (lab/fault_verdicts.judged: not-applied)."""
    return {"kind": fault.kind, "target": fault.target, "label": fault.label, "start_ns": None,
            "end_ns": None, "undone": True, "detail": "", "error": why}


class FaultTimer(threading.Thread):
    """One run's faults: each applied at `at_s` after the receiver said it is bound (`bound`:
    the timeline's t0; counting from the execs' start let a slow container start eat a
    fault's time, measured: a pause over before the receiver had bound), undone `duration_s`
    later, or at once when the run ends first (`ended`); one that never got its turn is
    recorded with that error rather than dropped."""

    def __init__(self, injector: FaultInjector, faults: Sequence[Fault], peers: dict[str, Any],
                 bound: threading.Event, ended: threading.Event, kill: Callable[[str], str] | None = None,
                 restart: Callable[[str, int], str] | None = None, marked: threading.Event | None = None):
        super().__init__(name="zmqlab-faults", daemon=True)
        self.injector, self.faults, self.peers, self.bound, self.ended = injector, faults, peers, bound, ended
        self.t0: float | None = None
        self.marked = marked or threading.Event()   # the receiver's K-th ping (--mark-after)
        self.kill, self.restart = kill, restart
        self.windows: list[dict] = []
        self.incarnations = {"receiver": 1, "sender": 1}

    def _kill(self, fault: Fault) -> dict:
        """kill -9 the peer's process, then (unless the run ended meanwhile) start it again."""
        window = dict(_not_applied(fault, None), start_ns=time.time_ns(), undone=False)
        try:
            window["detail"] = self.kill(fault.target)
            window["effective_ns"] = time.time_ns()
            if self.ended.wait(fault.duration_s):
                window["error"] = "not started again: the run ended while the peer was down"
                return window
            self.incarnations[fault.target] += 1
            window["lifting_ns"] = time.time_ns()
            window["detail"] += "; " + self.restart(fault.target, self.incarnations[fault.target])
            window["end_ns"], window["undone"] = time.time_ns(), True
        except (LabError, ValueError) + _ENGINE_ERRORS as exc:
            window["error"] = f"kill and restart failed: {engine.reason(exc)}"
        return window

    def _turn_missed(self, fault: Fault) -> bool:
        """Wait for the fault's time (or the receiver's K-th ping); True when the run ended first."""
        if fault.after_msgs is None:
            if self.t0 is None:
                while not self.bound.wait(0.02):
                    if self.ended.is_set():
                        return True
                self.t0 = time.monotonic()
            return self.ended.wait(max(0.0, self.t0 + (fault.at_s or 0.0) - time.monotonic()))
        while not self.marked.wait(0.02):
            if self.ended.is_set():
                return True
        return False

    def run(self) -> None:
        for fault in sorted(self.faults, key=lambda f: f.at_s or 0.0):
            if self._turn_missed(fault):
                self.windows.append(_not_applied(fault, "the run ended before the fault's time"))
                continue
            if fault.kind == "kill":
                self.windows.append(self._kill(fault))
                continue
            try:
                applied = self.injector.start(fault, self.peers[fault.target])
            except (LabError, ValueError) + _ENGINE_ERRORS as exc:
                self.windows.append(_not_applied(fault, f"could not apply it: {engine.reason(exc)}"))
                continue
            self.ended.wait(fault.duration_s)
            self.windows.append(self.injector.end(applied).to_dict())


class Peers:
    """The DockerBackend's peers part (a mixin: it runs on the backend's containers and execs)."""

    def _init_peers(self: DockerBackend) -> None:
        self._peer_containers: dict[tuple[str, str], Any] = {}   # (target name, role) -> container
        self._network: str | None = None
        self._network_lock = threading.Lock()
        self._pairs = itertools.count()
        self._sender_cursor = SENDER_PORT_BASE      # pub-binds: the next free block of sender ports
        self._injector: FaultInjector | None = None

    def _faults(self: DockerBackend) -> FaultInjector:
        from lab.backends.faults import FaultInjector      # it imports this module (network_name)
        with self._network_lock:
            if self._injector is None:
                self._injector = FaultInjector(self.client, self.labels, self.run_id,
                                               progress=lambda line: print(line, file=sys.stderr))
            return self._injector

    def undo_faults(self) -> list[dict]:
        """Heal, unpause: whatever a run still has applied (close(), Ctrl-C); the windows."""
        if self._injector is None:
            return []
        return [w.to_dict() for w in self._injector.undo_all()]

    def _next_port(self) -> int:
        return PORT_BASE + 2 * (next(self._pairs) % PORT_SLOTS)   # count() is atomic under the GIL

    def _sender_ports(self, count: int) -> int:
        """The first of `count` ports for a run's sender sockets to bind (pub-binds); blocks go
        round the range, so runs alive together in one sender container never share one."""
        with self._network_lock:
            if self._sender_cursor + count > SENDER_PORT_END:
                self._sender_cursor = SENDER_PORT_BASE
            first, self._sender_cursor = self._sender_cursor, self._sender_cursor + count
            return first

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
                  timeout: float, on_state: slots.OnState | None = None, fresh: bool = False,
                  faults: Sequence[Fault] = ()) -> PeerResult:
        """run_peers() without the report's provenance."""
        if faults:
            return self._run_faulted_pair(receiver, sender, argv, timeout, on_state, faults)
        rx = self._long_lived(receiver, "rx")
        tx = self._long_lived(sender, "tx")
        return self._pair_in(rx, tx, receiver, sender, argv, timeout, on_state, fresh)

    def _run_faulted_pair(self: DockerBackend, receiver: Target, sender: Target, argv: Sequence[str],
                          timeout: float, on_state: slots.OnState | None, faults: Sequence[Fault]) -> PeerResult:
        """A run with faults gets two containers of its own, removed after it: a pause, a
        partition or a kill of a shared peer would hit every other run under way in it
        (measured: `--jobs 2` fault cells saw each other's pauses and kills)."""
        rx = tx = None
        try:
            rx = self._start_container(receiver, f"{receiver.name}-rx-fault", role="rx")
            tx = self._start_container(sender, f"{sender.name}-tx-fault", role="tx")
            return self._pair_in(rx, tx, receiver, sender, argv, timeout, on_state, True, faults)
        finally:
            for container in (rx, tx):
                if container is not None:
                    self._remove(container)

    def _pair_in(self: DockerBackend, rx: Any, tx: Any, receiver: Target, sender: Target, argv: Sequence[str],
                 timeout: float, on_state: slots.OnState | None, fresh: bool,
                 faults: Sequence[Fault] = ()) -> PeerResult:
        peers = {"receiver": rx, "sender": tx}
        for fault in faults:        # refused before anything runs: no half-made fault run
            self._faults().check(fault, peers[fault.target])
        binds = sender_sockets(argv)
        rx_cmd, tx_cmd = peer_commands(argv, rx.name, self._next_port(), tx.name,
                                       self._sender_ports(binds) if binds else 0)
        try:
            rx_res, tx_res, windows = self._exec_pair(rx, tx, rx_cmd, tx_cmd, timeout, on_state, faults, peers)
        except Refused as refused:
            if fresh or self._closed:
                raise self._engine_error("create an exec", refused.error) from None
            # removed by hand, PID 1 killed, docker pause: once more in a fresh one (its new
            # name goes into the sender's addresses)
            self._discard(refused.container)
            return self._run_pair(receiver, sender, argv, timeout, on_state, fresh=True)
        if any(f.kind == "pause" for f in faults):
            # the lab's own pause is the finding, not someone else's (lab.runner.report_of)
            rx_res, tx_res = (dataclasses.replace(r, paused_s=0.0, pauses=()) for r in (rx_res, tx_res))
        return PeerResult(rx_res, tx_res, self._network or "", tuple(windows))

    def _exec_pair(self: DockerBackend, rx: Any, tx: Any, rx_cmd: Sequence[str], tx_cmd: Sequence[str],
                   timeout: float, on_state: slots.OnState | None = None, faults: Sequence[Fault] = (),
                   peers: dict[str, Any] | None = None) -> tuple[ProcessResult, ProcessResult, list[dict]]:
        """Run `rx_cmd` in container `rx` and `tx_cmd` in `tx` at the same time, each under the
        hard `timeout`, each killed by its own token when it runs out. Raises Refused when a
        container would not take its exec (before either started). The receiver's idle/busy
        lines go to `on_state` (lab/slots.py): it is the side that judges the run. `faults` are
        applied to `peers` (role -> container) meanwhile; their windows come back third. A
        kill fault SIGKILLs the sender's process and starts it again (`--incarnation 2`) in
        the same container, at the same address; the sender's result is then its last one. A
        kill of the receiver does the same to the receiver (`--incarnation 2`, which takes over
        the killed one's counts from its --journal); the run ends when that one ends."""
        started = time.monotonic()
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
        current = list(execs)               # the exec each role runs now (a restart replaces it)

        marked, bound = threading.Event(), threading.Event()

        def rx_state(state: str) -> None:       # the receiver's state lines: slots, marks, t0
            if state == "mark":
                marked.set()
            elif state == "bound":
                bound.set()
            elif on_state is not None:
                on_state(state)

        def wait(i: int, container: Any, exec_id: str, token: str, bound: float) -> None:
            try:
                results[i] = self._await_exec(container, exec_id, token, bound,
                                              rx_state if i == 0 else None)
            except BaseException as exc:        # re-raised in the caller's thread below
                results[i] = exc

        threads = [threading.Thread(target=wait, args=(i, *e, timeout), name=f"zmqlab-peer-{role}", daemon=True)
                   for i, (role, e) in enumerate(zip(ROLES, execs))]

        # A killed receiver's exec ends at once, but the run goes on until the one started in
        # its place ends: while this is set the run is not over (rx_over below).
        rx_down = threading.Event()

        def kill(role: str) -> str:
            container, _, token = current[ROLES.index(SHORT[role])]
            if role == "receiver":
                rx_down.set()
            killed = self._kill_cell(container, token)
            return f"SIGKILL to the {role}'s processes in {container.name} ({killed} killed)"

        def restart(role: str, incarnation: int) -> str:
            i = ROLES.index(SHORT[role])
            container = current[i][0]
            threads[i].join(KILL_GRACE_S)       # the killed one's exec has ended (its result kept)
            cmd = [*(tx_cmd if i else rx_cmd), "--incarnation", str(incarnation)]
            exec_id, token = self._create_exec(container, cmd)
            current[i] = (container, exec_id, token)
            waiter = threading.Thread(target=wait, name=f"zmqlab-peer-{ROLES[i]}-{incarnation}", daemon=True,
                                      args=(i, container, exec_id, token,
                                            max(1.0, timeout - (time.monotonic() - started))))
            waiter.start()              # started before it is seen: the run's loop joins threads[0]
            threads[i] = waiter
            rx_down.clear()
            return f"started again in {container.name} with --incarnation {incarnation}"

        ended = threading.Event()
        timer = FaultTimer(self._faults(), faults, peers or {}, bound, ended,
                           kill=kill, restart=restart, marked=marked) if faults else None
        for t in threads:
            t.start()
        if timer is not None:
            timer.start()
        def rx_over() -> bool:
            # a restart that failed leaves rx_down set: the fault timer's end settles it
            down = rx_down.is_set() and timer is not None and timer.is_alive()
            return not threads[0].is_alive() and not down
        try:
            while not rx_over():    # the receiver (the last one started) ends the run ...
                if threads[0].is_alive():
                    threads[0].join(0.05)
                else:
                    time.sleep(0.01)    # the killed one ended; the next is not started yet
        finally:
            ended.set()
            if timer is not None:
                timer.join()        # its end() undoes what it applied (bounded by the engine's retries)
        threads[1].join()           # ... and the sender (the last one started) outlives it briefly
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results[0], results[1], timer.windows if timer is not None else []
