"""The Docker side of faults (lab/faults.py, docs/faults.md): apply one to a peer container of
the `containers` topology mid-run, undo it, and say what happened (a FaultWindow).

  pause      docker pause / unpause of the peer (the engine's freezer: every process stops)
  partition  iptables DROP of everything in and out of the peer's lab interface (never lo)
  reset      iptables REJECT --reject-with tcp-reset of tcp in and out of that interface
  bandwidth  tc tbf on that interface, and on an ifb device its incoming traffic is redirected to
  delay/loss tc netem the same way (both directions); unsupported where the kernel has no netem
  kill       not here: the integrator kills and restarts the peer's process (start() refuses it)

Network faults run in a sidecar container that joins the peer's network namespace
(network_mode="container:<peer id>"): root with NET_ADMIN and no other capability, no new
privileges, read-only root, the run's labels. The peer keeps its own sandbox; the host's
network namespace is never entered, so the host's iptables and qdiscs never change.

One sidecar per fault, kept alive for the fault's window and given its apply and heal as two
execs, rather than one short `docker run` to apply and another to heal: an exec into a running
container costs tens of ms where a container start costs hundreds, so the window's edges are
where the run's schedule put them; a sidecar that died meanwhile (it sleeps at most the fault's
duration plus LINGER_S) is replaced by a fresh one for the heal. It is removed right after.

Rules and qdiscs live only in the peer's network namespace, so removing the peer removes them
too (what the reaper does after a `kill -9` of the lab); undo_all() still heals explicitly, so a
peer that outlives the fault (a run that goes on, a container reused) is clean.
"""
from __future__ import annotations

import re
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import docker.errors
import requests.exceptions

from lab import engine, sidecar
from lab.backends.peers import network_name
from lab.errors import LabError
from lab.faults import REQUIRES, Fault, FaultUnsupported, FaultWindow  # noqa: F401 (FaultUnsupported: raised here)

FEATURES = ("iptables", "tbf", "netem", "ingress")
ROLE_LABEL = f"{engine.LABEL}.role"           # "sidecar" on every injector container
PEER_LABEL = f"{engine.LABEL}.fault-peer"     # the name of the peer it works on
IFB = "zmqlab-ifb"                            # the peer's incoming traffic is shaped on this device
LINGER_S = 300                                # a sidecar outlives its fault's duration by at most this
QDISC_LATENCY = "200ms"                       # how long tbf queues a packet before dropping it
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


# ---------------------------------------------------------------- what runs in the sidecar (pure)

@dataclass(frozen=True)
class Step:
    """One piece of a fault, as shell commands run in the peer's network namespace."""
    apply: str
    undo: str
    present: str           # exits 0 while the piece is still in place


def _rule(tool: str, chain: str, spec: str) -> Step:
    return Step(f"{tool} -I {chain} 1 {spec}", f"{tool} -D {chain} {spec}", f"{tool} -C {chain} {spec}")


def _qdisc(dev: str, qdisc: str) -> Step:
    kind = qdisc.split()[0]
    return Step(f"tc qdisc add dev {dev} root {qdisc}", f"tc qdisc del dev {dev} root",
                f"tc qdisc show dev {dev} root | grep -qw {kind}")


def _ingress(dev: str) -> tuple[Step, ...]:
    """Redirect everything `dev` receives to the IFB device, where an egress qdisc can shape it."""
    return (Step(f"ip link add {IFB} type ifb", f"ip link del {IFB}", f"ip link show {IFB}"),
            Step(f"ip link set {IFB} up", ":", "false"),
            Step(f"tc qdisc add dev {dev} handle ffff: ingress", f"tc qdisc del dev {dev} ingress",
                 f"tc qdisc show dev {dev} ingress | grep -qw ingress"),
            Step(f"tc filter add dev {dev} parent ffff: protocol all u32 match u32 0 0 "
                 f"action mirred egress redirect dev {IFB}", ":", "false"))


def qdisc_of(fault: Fault) -> str:
    if fault.kind == "bandwidth":
        burst = max(fault.rate_bits() // 8 // 50, 3200)     # 20 ms of the rate, at least 2 frames
        return f"tbf rate {fault.rate} burst {burst} latency {QDISC_LATENCY}"
    return f"netem {fault.kind} {fault.rate}"


def steps(fault: Fault, dev: str) -> tuple[Step, ...]:
    """What applies `fault` to interface `dev` (and only it: loopback is never touched)."""
    tools = ("iptables", "ip6tables")
    if fault.kind == "partition":
        return tuple(_rule(t, c, f"{io} {dev} -j DROP") for t in tools for c, io in (("INPUT", "-i"), ("OUTPUT", "-o")))
    if fault.kind == "reset":
        # not the resets themselves: the one REJECT makes for an incoming segment leaves
        # through OUTPUT, and a reset rejected there is dropped, never answered
        return tuple(_rule(t, c, f"{io} {dev} -p tcp ! --tcp-flags RST RST -j REJECT --reject-with tcp-reset")
                     for t in tools for c, io in (("INPUT", "-i"), ("OUTPUT", "-o")))
    if fault.kind in ("bandwidth", "delay", "loss"):
        return (_qdisc(dev, qdisc_of(fault)), *_ingress(dev), _qdisc(IFB, qdisc_of(fault)))
    raise ValueError(f"{fault.kind} is not a network fault")


def probe_steps(dev: str) -> dict[str, tuple[Step, ...]]:
    """A harmless try of each feature: a chain no packet is sent through, a qdisc that shapes
    nothing (10gbit) or delays by 1 ms, an ingress redirect with nothing on the other side."""
    chain = "zmqlab-probe"
    ipt = tuple(s for t in ("iptables", "ip6tables") for s in (
        Step(f"{t} -N {chain}", f"{t} -X {chain}", f"{t} -S {chain}"),
        Step(f"{t} -A {chain} -p tcp -j REJECT --reject-with tcp-reset", f"{t} -F {chain}", "false")))
    return {"iptables": ipt,
            "tbf": (_qdisc(dev, "tbf rate 10gbit burst 1mb latency 50ms"),),
            "netem": (_qdisc(dev, "netem delay 1ms"),),
            "ingress": _ingress(dev)}


def apply_script(todo: Sequence[Step]) -> str:
    """Each step in order; at the first failure, undo what was applied, print `FAILED: <cmd>:
    <its output>` and exit 1; else print `applied`."""
    lines = []
    for i, s in enumerate(todo):
        back = "; ".join(f"{t.undo} >/dev/null 2>&1" for t in reversed(todo[:i])) or ":"
        lines.append(f'o=$({s.apply} 2>&1) || {{ echo "FAILED: {s.apply}: $o"; {back}; exit 1; }}')
    return "\n".join([*lines, "echo applied"])


def heal_script(todo: Sequence[Step]) -> str:
    """Undo every step (latest first; one already gone is fine), then print `LEFT: <cmd>` for
    each piece still in place and `healed`."""
    undo = [f"{s.undo} >/dev/null 2>&1" for s in reversed(todo)]
    left = [f'if {s.present} >/dev/null 2>&1; then echo "LEFT: {s.apply}"; fi' for s in todo]
    return "\n".join([*undo, *left, "echo healed"])


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


# ---------------------------------------------------------------- the injector

@dataclass(eq=False, frozen=True)
class Applied:
    """A fault in effect: what start() returns and end() takes."""
    fault: Fault
    peer: Any
    start_ns: int
    sidecar: Any = None               # network faults: the sidecar kept for the heal
    dev: str = ""
    todo: tuple[Step, ...] = ()
    detail: str = ""
    effective: list = field(default_factory=list)     # [ns] once applying returned


class FaultInjector:
    """Applies faults to the peers of one run. `labels` are the run's (lab.engine.run_labels),
    put on every sidecar so the run's cleanup, the reaper and the orphan sweep remove them."""

    def __init__(self, client: Any, labels: dict[str, str], run_id: str, progress: Callable[[str], None] = print):
        self.client, self.labels, self.run_id, self.progress = client, dict(labels), run_id, progress
        self._lock = threading.Lock()
        self._active: dict[int, Applied] = {}
        self._probed: dict[str, str | None] | None = None
        self._image: str | None = None
        self._devices: dict[str, str] = {}          # peer id -> its lab interface (an exec saved)

    # ------------------------------------------------------------ sidecars

    def _sidecar(self, peer: Any, lifetime_s: float) -> Any:
        if self._image is None:
            self._image = sidecar.ensure_image(self.client, self.progress)
        name = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"zmqlab-{self.run_id}-fault-{uuid.uuid4().hex[:8]}")
        box = engine.transient_retry(self.client.containers.create)(
            self._image, ["sleep", str(int(lifetime_s) + 1)], name=name, detach=True, auto_remove=True,
            **engine.sidecar_sandbox(peer.id, {**self.labels, ROLE_LABEL: "sidecar", PEER_LABEL: peer.name}))
        try:
            engine.transient_retry(box.start)()
        except BaseException:
            self._remove(box)
            raise
        return box

    def _remove(self, box: Any) -> None:
        try:
            engine.transient_retry(box.remove)(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:      # auto_remove already under way
            if exc.status_code != 409:
                raise

    def _sh(self, box: Any, script: str) -> tuple[int, str]:
        """Run `script` in the sidecar; (exit code, output). Only the exec's creation is retried:
        a start retried after a lost answer could apply a fault twice."""
        exec_id = engine.transient_retry(self.client.api.exec_create)(box.id, ["sh", "-c", script], user="0:0")["Id"]
        out = self.client.api.exec_start(exec_id).decode(errors="replace")
        code = engine.transient_retry(self.client.api.exec_inspect)(exec_id).get("ExitCode")
        return (code if code is not None else -1), out

    def _device(self, box: Any, peer: Any) -> str:
        """The peer's interface on its lab network (the run's, else its only one); never lo."""
        if peer.id not in self._devices:
            self._devices[peer.id] = self._find_device(box, peer)
        return self._devices[peer.id]

    def _find_device(self, box: Any, peer: Any) -> str:
        engine.transient_retry(peer.reload)()
        nets = {k: v for k, v in (peer.attrs.get("NetworkSettings", {}).get("Networks") or {}).items()
                if v.get("IPAddress")}
        net = nets.get(network_name(self.run_id)) or (next(iter(nets.values())) if len(nets) == 1 else None)
        if net is None:
            raise LabError(f"{peer.name}: no single lab network to fault (networks: {', '.join(nets) or 'none'})")
        code, out = self._sh(box, "ip -o -4 addr show")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[3].split("/")[0] == net["IPAddress"] and parts[1] != "lo":
                return parts[1]
        raise LabError(f"{peer.name}: no interface carries {net['IPAddress']} ({one_line(out)})")

    # ------------------------------------------------------------ probe

    def probe(self, container: Any) -> dict[str, str | None]:
        """Each network feature (FEATURES): None when it works in `container`'s network
        namespace, else why not in one line, found by trying it there; once per injector (the
        kernel is the engine's, the same for every peer)."""
        if self._probed is not None:
            return dict(self._probed)
        found: dict[str, str | None] = {}
        box = None
        try:
            box = self._sidecar(container, 60)
            dev = self._device(box, container)
            for feature, todo in probe_steps(dev).items():
                code, out = self._sh(box, apply_script(todo))
                found[feature] = None if code == 0 else one_line(out).removeprefix("FAILED: ") or f"exit {code}"
                code, out = self._sh(box, heal_script(todo))
                left = [line[6:] for line in out.splitlines() if line.startswith("LEFT: ")]
                if left:
                    raise LabError(f"probing {feature} in {container.name} left {'; '.join(left)} in place")
        except (LabError, *_ENGINE_ERRORS) as exc:
            why = f"no sidecar in {getattr(container, 'name', container)}: {engine.reason(exc)}"
            found = {f: found.get(f, why) for f in FEATURES}
        finally:
            if box is not None:
                self._remove(box)
        self._probed = found
        return dict(found)

    # ------------------------------------------------------------ start / end

    def check(self, fault: Fault, container: Any) -> None:
        """Raise FaultUnsupported when the probe found a feature `fault` needs missing in
        `container`'s kernel (the engine's); probes only for kinds that need a feature."""
        missing = [f"{f}: {why}" for f in REQUIRES[fault.kind] if (why := self.probe(container).get(f))]
        if missing:
            raise FaultUnsupported(f"{fault.kind} needs {', '.join(REQUIRES[fault.kind])} in the engine's kernel; "
                                   + "; ".join(missing))

    def start(self, fault: Fault, container: Any) -> Applied:
        """Apply `fault` to the peer `container`; its window starts just before. Raises
        ValueError for kill (the integrator's), FaultUnsupported when the probe says the
        kernel cannot, LabError when applying failed (nothing is left applied then)."""
        if fault.kind == "kill":
            raise ValueError("kill is not the injector's: the run kills and restarts the peer's process")
        self.check(fault, container)
        if fault.kind == "pause":
            applied = Applied(fault, container, time.time_ns(), detail=f"docker pause {container.name}")
            self._register(applied)
            try:
                engine.transient_retry(container.pause)()
            except docker.errors.APIError as exc:
                if not (exc.status_code == 409 and self._state(container) == "paused"):
                    self._forget(applied)      # a retried pause that had worked answers 409
                    raise LabError(f"docker pause {container.name}: {engine.reason(exc)}") from None
            applied.effective.append(time.time_ns())
            return applied
        box = self._sidecar(container, fault.duration_s + LINGER_S)
        try:
            dev = self._device(box, container)
            todo = steps(fault, dev)
            detail = f"{'; '.join(s.apply for s in todo)} (sidecar {box.name} in {container.name}'s netns)"
            applied = Applied(fault, container, time.time_ns(), box, dev, todo, detail)
            self._register(applied)
            code, out = self._sh(box, apply_script(todo))
        except BaseException:
            # interrupted or failed before the apply ran: nothing applied, or undo_all heals it
            if not any(a.sidecar is box for a in self._snapshot()):
                self._remove(box)
            raise
        if code != 0:
            self._forget(applied)
            self._remove(box)
            raise LabError(f"{fault.label} on {container.name}: {one_line(out).removeprefix('FAILED: ')}")
        applied.effective.append(time.time_ns())
        return applied

    def end(self, applied: Applied) -> FaultWindow:
        """Undo a fault start() applied and check it is gone; the window ends just after."""
        with self._lock:
            if self._active.pop(id(applied), None) is None:
                raise LabError(f"{applied.fault.label}: not applied, or already ended")
        lifting_ns = time.time_ns()
        try:
            undone, detail, error, end_ns = self._heal(applied)
        except BaseException as exc:
            if not isinstance(exc, Exception):      # Ctrl-C: undo_all() finishes the job
                self._register(applied)
                raise
            undone, detail, error = False, applied.detail, f"undoing failed: {engine.reason(exc)}"
            end_ns = time.time_ns()
        return FaultWindow(applied.fault.kind, applied.fault.target, applied.start_ns, end_ns,
                           undone, detail, error, applied.fault.label,
                           applied.effective[0] if applied.effective else None, lifting_ns)

    def _heal(self, applied: Applied) -> tuple[bool, str, str | None, int]:
        """(undone, detail, error, when the undoing returned: not counting the sidecar's removal)"""
        peer = applied.peer
        if applied.fault.kind == "pause":
            try:
                engine.transient_retry(peer.unpause)()
            except docker.errors.NotFound:
                return True, f"{applied.detail}; the peer is gone", None, time.time_ns()
            except docker.errors.APIError as exc:
                if exc.status_code != 409:          # 409: not paused (any more)
                    raise
            healed_ns, state = time.time_ns(), self._state(peer)
            ok = state in ("running", "exited", "gone")
            return ok, f"{applied.detail}; unpaused ({state})", None if ok else f"peer is {state} after unpause", healed_ns
        box = applied.sidecar
        try:
            code, out = self._sh(box, heal_script(applied.todo))
        except docker.errors.APIError as exc:
            if not engine.exec_refused(exc):
                raise
            # the sidecar is gone (it outlived its lifetime, or was removed): heal from a fresh one
            try:
                box = self._sidecar(peer, 60)
            except docker.errors.APIError as again:
                if again.status_code == 404 or self._state(peer) == "gone":
                    return True, f"{applied.detail}; the peer is gone, and its netns with the rules", None, time.time_ns()
                raise
            code, out = self._sh(box, heal_script(applied.todo))
        finally:
            healed_ns = time.time_ns()
            self._remove(box)
        left = [line[6:] for line in out.splitlines() if line.startswith("LEFT: ")]
        if code != 0 or left or "healed" not in out:
            return False, applied.detail, f"still applied: {'; '.join(left) or one_line(out)}", healed_ns
        return True, applied.detail, None, healed_ns

    def _state(self, container: Any) -> str:
        try:
            engine.transient_retry(container.reload)()
        except docker.errors.NotFound:
            return "gone"
        state = container.attrs.get("State", {})
        return "paused" if state.get("Paused") else str(state.get("Status", "?"))

    # ------------------------------------------------------------ bookkeeping, cleanup

    def _register(self, applied: Applied) -> None:
        with self._lock:
            self._active[id(applied)] = applied

    def _forget(self, applied: Applied) -> None:
        with self._lock:
            self._active.pop(id(applied), None)

    def _snapshot(self) -> list[Applied]:
        with self._lock:
            return list(self._active.values())

    def undo_all(self) -> list[FaultWindow]:
        """Heal and unpause every fault still applied, then remove every sidecar of the run
        (one whose start was cut short too). For close() and Ctrl-C: idempotent, never raises
        for a peer or sidecar already gone or an engine that fails (the window says so)."""
        windows = []
        for applied in self._snapshot():
            try:
                windows.append(self.end(applied))
            except LabError:                        # ended meanwhile by another thread
                continue
        try:
            flt = {"label": [f"{engine.LABEL_RUN}={self.run_id}", f"{ROLE_LABEL}=sidecar"]}
            for box in engine.transient_retry(self.client.containers.list)(all=True, filters=flt, ignore_removed=True):
                self._remove(box)
        except _ENGINE_ERRORS as exc:
            self.progress(f"fault sidecars of {self.run_id} not removed: {engine.reason(exc)} "
                          "(the run's cleanup and the reaper remove them)")
        return windows


def describe(found: dict[str, str | None]) -> str:
    """A probe's answer in one line: `iptables ok, tbf ok, netem: <why>, ingress ok`."""
    return ", ".join(f"{f} ok" if found.get(f) is None else f"{f}: {found[f]}" for f in FEATURES)
