"""Docker backend: every cell runs inside its target's image, in a sandboxed container.

Image contract: `/opt/venv/bin/python` imports zmq. The repo's scenarios/ directory reaches
each container through the engine's API, never as a path of this host (the engine may be
remote, moby#23900): a deterministic tar of it (scenarios_archive: sorted names, mtime 0,
root-owned, no bytecode), made once per backend, is put_archive'd into the container's own
labelled anonymous volume at /opt/zmqlab/scenarios after create and before start (the root
stays read-only; the engine refuses put_archive into a read-only root but not into a volume;
the files are root's, the sandbox's uid cannot change them). Cells run
`/opt/venv/bin/python -m scenarios ARGV` with PYTHONPATH=/opt/zmqlab and their results come
back as the exec's output. Image names, labels, the sandbox and the retry policy come from
lab.engine (their one home).

Scenarios by put_archive, measured against the alternatives (create + start + one exec that
imports them, median of 5 x 2, pyzmq-25.1.2, engine 20.10 on fuse-overlayfs, 2 cores, local
socket): host bind mount 0.25 s per container (and impossible on a remote engine); volume +
put_archive (120 kB) 0.28-0.29 s per container; a derived image layer keyed by the scenarios'
hash 0.23 s per container but 5.0 s to build once per (pin, scenarios version), and a derived
image per pin left on the engine. A run starts one to three long-lived containers per pin,
so put_archive costs ~0.1 s where the layer costs 5 s each time the scenarios change: kept.

Design, measured with lab.bench.measure_overhead (trivial `python -c pass`, n=20, engine 20.10
on fuse-overlayfs, 2 cores): one long-lived container per target (docker-init as PID 1
reaping zombies, an idle python as its child) runs each cell through a docker exec,
~55-120 ms per cell including ~25-45 ms of interpreter start, vs ~270-720 ms for a fresh
container per cell; the long-lived container costs ~0.2-0.4 s once per target per run.
mode="container" keeps the per-run design available.

Concurrent run() calls for one target share its container (and its pids/memory limits).

run_peers() runs one run as two peer containers on a network of the run (the containers
topology): lab/backends/peers.py.

Hard timeout, on top of the scenario's own watchdog: each exec carries a unique
ZMQLAB_CELL=<token> in its environment; when the deadline passes the lab runs a second
exec that SIGKILLs every process whose environment holds that token and every process in
the session of one (the cell and anything it spawned), and if that exec fails or the cell
still has not ended after a grace period, kills the whole container (a fresh one serves
the next cell).

Outside events: a listener follows the engine's events for this run's containers (pause,
unpause, kill, stop, restart, die, destroy, oom). A run whose container someone else killed,
stopped, restarted or removed, that was still paused (or had been paused) when the hard
timeout fired, or that met an engine error mid-run, comes back with `infra` naming what
happened ("container zmqlab-... was killed from outside: exit 137, OOMKilled=false") and its
container replaced, never as a deadlock or an error of the target. The time a container was
paused during a run that ended normally comes back as `paused_s` (and when: `pauses`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import docker
import docker.errors
import requests.exceptions

from lab import engine, reaper, slots
from lab.backends.base import PeerResult, ProcessResult
from lab.backends.peers import ROLES, Peers
from lab.engine import PYTHON, TARGET_REPO, image_name
from lab.errors import LabError
from lab.faults import Fault
from lab.targets import Target

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
KILL_GRACE = 1.0      # s between the in-container kill and killing the container
TOKEN_VAR = "ZMQLAB_CELL"
# Container events that tell what happened to a run from outside (docker pause/kill/stop/rm ...)
WATCHED = ("pause", "unpause", "kill", "stop", "restart", "die", "destroy", "oom")
ENDINGS = ("kill", "stop", "restart", "die", "destroy")
SETTLE_S = 0.5        # how long an odd end waits for the engine to tell what happened
EXIT_WAIT_S = 3.0     # ... and, once it has, for the container's exit status
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

# PID 1's child in a long-lived container: sleeps until killed (needs only the contract's python)
IDLE = [PYTHON, "-S", "-c", "import signal\nwhile True: signal.pause()"]

# SIGKILL the cell: every process whose environment holds ZMQLAB_CELL=<token>, and every
# process in the session of one (docker starts each exec as a session leader, so children
# that drop the variable are caught too). Never PID 1's session or the killer's. Prints how many.
KILLER = r"""
import os, sys
key = b"\0%s=%s\0" % (sys.argv[1].encode(), sys.argv[2].encode())
me = os.getpid()
procs = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % p, "rb") as f:
            sid = int(f.read().rsplit(b")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        continue
    try:
        with open("/proc/%s/environ" % p, "rb") as f:
            hit = key in b"\0" + f.read()
    except OSError:
        hit = False
    procs[int(p)] = (sid, hit)
spare = {procs.get(1, (0,))[0], procs[me][0], 0}
sessions = {sid for sid, hit in procs.values() if hit} - spare
n = 0
for pid, (sid, hit) in procs.items():
    if pid not in (1, me) and (hit or sid in sessions):
        try:
            os.kill(pid, 9)
            n += 1
        except OSError:
            pass
print(n)
"""


SCENARIOS_INSIDE = f"{engine.MOUNT_ROOT}/scenarios"


def scenarios_archive(src: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The scenarios as the engine gets them: a tar of `src`'s files (no __pycache__, no .pyc)
    relative to it, byte for byte the same for the same contents (sorted names, mtime 0, owner
    root, modes 0644/0755), and its content hash ("sha256:<hex>" of that tar), which every run
    report records (provenance.scenarios)."""
    root = Path(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or path.suffix == ".pyc" or path.is_symlink():
                continue
            info = tarfile.TarInfo(rel.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif path.is_file():
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def _stderr_line(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:           # close() may run from a signal handler or at exit
        pass


def with_provenance(result: ProcessResult, provenance: dict | None,
                    sender: dict | None = None, trace: dict | None = None) -> ProcessResult:
    """The run's report (its last JSON line) with "image": what it ran in and on which base
    (lab.engine.image_provenance), with "sender_image" the same of the sender's image when
    the run had a sender of its own (the containers topology: two images, maybe two pins), and
    with "provenance" (lab.engine.run_provenance: image ID, recipe hash, engine, scenarios'
    hash). Anything that is not a report is left as it came."""
    if not provenance or not result.stdout:
        return result
    lines = result.stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                report = json.loads(lines[i])
            except ValueError:
                return result
            if not isinstance(report, dict):
                return result
            report["image"] = provenance
            if trace:
                report["provenance"] = trace
            if sender:
                report["sender_image"] = sender
            lines[i] = json.dumps(report)
            return dataclasses.replace(result, stdout="\n".join(lines) + "\n")
    return result


class DockerBackend(Peers):
    name = "docker"

    def __init__(self, run_id: str, *, client: docker.DockerClient | None = None,
                 scenarios_dir: str | os.PathLike[str] | None = None,
                 mode: str = "exec", image_repo: str = TARGET_REPO,
                 check_import: str | None = "zmq",
                 mem_limit: str = engine.MEM_LIMIT, pids_limit: int = engine.PIDS_LIMIT,
                 tmpfs_size: str = engine.TMPFS_SIZE,
                 report: Callable[[str], None] = _stderr_line):
        if mode not in ("exec", "container"):
            raise LabError(f"unknown docker backend mode {mode!r} (known: exec, container)")
        self.run_id = run_id
        self.mode = mode
        self.image_repo = image_repo
        self.check_import = check_import
        self.mem_limit, self.pids_limit, self.tmpfs_size = mem_limit, pids_limit, tmpfs_size
        src = Path(scenarios_dir) if scenarios_dir is not None else SCENARIOS_DIR
        if not src.is_dir():
            raise LabError(f"scenario directory {src} does not exist")
        self.scenarios_dir = src.resolve()
        self._payload, self.scenarios_hash = scenarios_archive(self.scenarios_dir)
        self.client = client or engine.connect()
        self.labels = engine.run_labels(run_id)
        self.close_errors: list[str] = []    # cleanup problems; close() reports them (report)
        self._report = report
        self._reported = 0
        self._closed = False
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}          # target name -> long-lived container
        self._init_peers()                              # (target name, role) -> peer containers
        self._ready: dict[str, str | None] = {}        # target name -> prepare() verdict
        self._provenance: dict[str, dict] = {}         # target name -> its image and base (labels)
        self._trace: dict[str, dict] = {}              # target name -> its run reports' provenance
        self._events: dict[str, list[tuple[int, str, dict]]] = {}   # container id -> events
        self._ours: dict[str, int] = {}                # container id -> when the lab removed it
        self._events_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stream: Any = None
        try:
            self.swept = engine.sweep_orphans(self.client, self.close_errors)
            self.engine = engine.engine_identity(self.client)
            version = self.engine["version"] or "?"
        except ENGINE_ERRORS as exc:
            raise LabError(f"Docker engine at {engine.engine_address()} failed: "
                           f"{engine.reason(exc)}") from None
        self._listen()
        # A lab killed with SIGKILL runs no finally block: its reaper removes the run then.
        self._reaper = reaper.spawn(run_id)
        per = "one container per target, a docker exec per cell" if mode == "exec" \
            else "a fresh container per cell"
        self.description = (f"Docker engine {version} at {engine.engine_address()} "
                            f"({per}, sandboxed: no network (peers: the run's internal one), "
                            "uid 65534, read-only root)")

    # ------------------------------------------------------------ Backend protocol

    def prepare(self, target: Target) -> str | None:
        """The image must exist and (check_import) import the module; in exec mode the
        target's long-lived container is started here."""
        if target.broken:
            return "cannot be built here: " + target.broken
        if target.name in self._ready:
            return self._ready[target.name]
        image = image_name(target, self.image_repo)
        try:
            found = self.client.images.get(image)
            self._provenance[target.name] = engine.image_provenance(found)
            self._trace[target.name] = engine.run_provenance(found, self.engine, self.scenarios_hash)
        except docker.errors.ImageNotFound:
            return f"image {image} is not built; run `invoke images --targets {target.name}`"
        except ENGINE_ERRORS as exc:
            raise self._engine_error("look up image " + image, exc) from None
        if self.mode == "exec":
            self._long_lived(target)
        verdict: str | None = None
        if self.check_import:
            probe = self.run_command(target, [PYTHON, "-c", f"import {self.check_import}"], 60.0)
            if probe.infra:             # not the image's fault: once more, in a fresh container
                probe = self.run_command(target, [PYTHON, "-c", f"import {self.check_import}"], 60.0)
            if probe.returncode != 0:
                last = (probe.stderr.strip().splitlines() or [
                    probe.infra or ("timed out" if probe.timed_out else f"exit {probe.returncode}")])[-1]
                verdict = f"image {image}: {PYTHON} cannot import {self.check_import}: {last}"
        self._ready[target.name] = verdict
        return verdict

    def run(self, target: Target, argv: Sequence[str], timeout: float,
            on_state: slots.OnState | None = None) -> ProcessResult:
        result = self.run_command(target, [PYTHON, "-m", "scenarios", *map(str, argv)], timeout, on_state)
        return with_provenance(result, self._provenance.get(target.name),
                               trace=self._trace.get(target.name))

    def run_peers(self, receiver: Target, sender: Target, argv: Sequence[str], timeout: float,
                  on_state: slots.OnState | None = None, faults: Sequence[Fault] = ()) -> PeerResult:
        """The containers topology (lab/backends/peers.py): the receiver's report records both
        images ("image": the receiver's, "sender_image": the sender's)."""
        res = self._run_pair(receiver, sender, argv, timeout, on_state, faults=faults)
        return dataclasses.replace(res, receiver=with_provenance(
            res.receiver, self._provenance.get(receiver.name), self._provenance.get(sender.name),
            trace=self._trace.get(receiver.name)))

    def run_command(self, target: Target, cmd: Sequence[str], timeout: float,
                    on_state: slots.OnState | None = None) -> ProcessResult:
        """Run any command of the image in the target's sandbox, as run() runs a cell.
        `on_state` hears the run's idle/busy lines in exec mode (lab/slots.py); a run in a
        container of its own keeps its slot throughout."""
        if self.mode == "container":
            return self._run_in_new_container(target, cmd, timeout)
        return self._run_in_exec(target, cmd, timeout, on_state=on_state)

    def release(self, target: Target) -> None:
        """The target's cells are done: remove its long-lived containers (its cell container
        and its peers) now rather than at close(), so a sweep over many targets keeps one
        target's containers up, not all of them. The run's network stays until close()."""
        with self._lock:
            mine = [c for c in (self._containers.get(target.name),
                                *(self._peer_containers.get((target.name, role)) for role in ROLES))
                    if c is not None]
        for container in mine:
            self._discard(container)

    def close(self) -> None:
        """Remove every container/network/volume of this run. Idempotent, lock-free, never
        raises (safe from a finally block or a signal handler); problems land in
        self.close_errors and are reported once, in one line (report, stderr by default)."""
        self._closed = True
        try:
            self.undo_faults()      # heal and unpause first: a paused container resists removal
        except Exception as exc:
            self.close_errors.append(engine.reason(exc))
        self._containers.clear()
        self._peer_containers.clear()
        try:
            engine.remove_run(self.client, self.run_id, self.close_errors)
        except Exception as exc:
            self.close_errors.append(engine.reason(exc))
        reaper.stop(getattr(self, "_reaper", None))
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        new = self.close_errors[self._reported:]
        self._reported = len(self.close_errors)
        if new:
            more = f" (+{len(new) - 1} more)" if len(new) > 1 else ""
            self._report(f"zmqlab: cleaning up Docker run {self.run_id} met {len(new)} problem(s): "
                         f"{new[0]}{more}; see `docker ps -a --filter label={engine.LABEL_RUN}={self.run_id}`")

    def __enter__(self) -> DockerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ containers

    def _start_container(self, target: Target, name: str, command: Sequence[str] | None = None,
                         role: str = "") -> Any:
        """Create and start a sandboxed container of `target`'s image. `command` None makes
        a long-lived idle container (for exec). A peer `role` ("rx", "tx") joins the run's
        network (created on first use); otherwise the container has none."""
        if self._closed:
            raise LabError("the docker backend is closed")
        image = image_name(target, self.image_repo)
        unique = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"zmqlab-{self.run_id}-{name}-{uuid.uuid4().hex[:6]}")
        cfg = engine.sandbox(mem_limit=self.mem_limit, pids_limit=self.pids_limit,
                             tmpfs_size=self.tmpfs_size, payload=SCENARIOS_INSIDE, labels=self.labels,
                             network=self._peer_network() if role else None)
        try:
            container = engine.transient_retry(self.client.containers.create)(
                image, entrypoint=list(command or IDLE), command=[], name=unique,
                labels=self.labels, detach=True, **cfg)
            if self._closed:            # close() ran while we created: do not leak it
                container.remove(force=True, v=True)
                raise LabError("the docker backend is closed")
            # the scenarios, through the API (the engine may not share this host's files)
            if not engine.transient_retry(container.put_archive)(SCENARIOS_INSIDE, self._payload):
                raise LabError(f"the engine would not take the scenarios into {container.name}")
            engine.transient_retry(container.start)()
            if command is None:
                self._compile_scenarios(container)
        except ENGINE_ERRORS as exc:
            raise self._engine_error(f"start a container of {image}", exc) from None
        return container

    def _compile_scenarios(self, container: Any) -> None:
        """Compile the scenarios once, in the container's own Python, beside their source in its
        volume (as root, the files' owner; the runs' user can only read them). Compiled at each
        run instead (PYTHONDONTWRITEBYTECODE) they cost ~40 ms of a run's ~100 ms start, thousands
        of times in a full sweep (measured). Best effort: a failure only leaves that cost."""
        try:
            container.exec_run([PYTHON, "-m", "compileall", "-q", SCENARIOS_INSIDE], user="0:0")
        except ENGINE_ERRORS:
            pass

    def _long_lived(self, target: Target, role: str = "") -> Any:
        """The target's long-lived container: the network-less one for cells, or its peer
        container of `role` ("rx", "tx") on the run's network."""
        slots: dict[Any, Any] = self._peer_containers if role else self._containers
        key = (target.name, role) if role else target.name
        with self._lock:
            c = slots.get(key)
            if c is None:
                c = self._start_container(target, f"{target.name}-{role}" if role else target.name,
                                          role=role)
                slots[key] = c
            return c

    def _discard(self, container: Any) -> None:
        """Remove `container`; whichever slot it filled gets a fresh one on next use."""
        with self._lock:
            for slots in (self._containers, self._peer_containers):
                for key in [k for k, c in slots.items() if c is container]:
                    del slots[key]
        self._remove(container)

    def _remove(self, container: Any) -> None:
        with self._events_lock:
            self._ours.setdefault(container.id, time.time_ns())
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            self.close_errors.append(f"{container.name}: {engine.reason(exc)}")

    def _engine_error(self, what: str, exc: BaseException) -> LabError:
        if isinstance(exc, LabError):
            return exc
        return LabError(f"Docker engine at {engine.engine_address()} failed to {what}: "
                        f"{engine.reason(exc)}")

    # ------------------------------------------------------------ outside events

    def _listen(self) -> None:
        """Follow this run's container events in the background (one streaming request)."""
        try:
            self._stream = self.client.api.events(decode=True, filters={
                "type": "container", "label": f"{engine.LABEL_RUN}={self.run_id}",
                "event": list(WATCHED)})
        except ENGINE_ERRORS:
            self._stream = None         # _timeline() asks the engine instead
            return
        self._listener = threading.Thread(target=self._follow, args=(self._stream,),
                                          name=f"zmqlab-events-{self.run_id}", daemon=True)
        self._listener.start()

    def _follow(self, stream: Any) -> None:
        try:
            for event in stream:
                self._record(event)
        except Exception:
            pass                        # closed, or the engine went away: see _timeline()

    def _record(self, event: dict) -> None:
        actor = event.get("Actor") or {}
        cid = event.get("id") or actor.get("ID") or ""
        action = (event.get("Action") or event.get("status") or "").split(":")[0]
        when = int(event.get("timeNano") or int(event.get("time") or 0) * 10**9)
        with self._events_lock:
            self._events.setdefault(cid, []).append((when, action, actor.get("Attributes") or {}))

    def _timeline(self, cid: str, since_ns: int) -> list[tuple[int, str, dict]]:
        """This container's events from `since_ns` on, oldest first: as the listener saw them,
        or (no listener: it could not start or the engine dropped it) asked of the engine."""
        if self._listener is None or not self._listener.is_alive():
            now = time.time_ns()
            events = []
            try:
                for event in self.client.api.events(
                        since=f"{since_ns // 10**9}.{since_ns % 10**9:09d}",
                        until=f"{now // 10**9}.{now % 10**9:09d}", decode=True,
                        filters={"container": cid, "event": list(WATCHED)}):
                    actor = event.get("Actor") or {}
                    events.append((int(event.get("timeNano") or 0),
                                   (event.get("Action") or "").split(":")[0], actor.get("Attributes") or {}))
            except ENGINE_ERRORS:
                pass
        else:
            with self._events_lock:
                events = list(self._events.get(cid, ()))
        return sorted((e for e in events if e[0] >= since_ns), key=lambda e: e[0])

    def _events_of(self, cid: str, since_ns: int) -> list[tuple[int, str, dict]]:
        """This container's events from `since_ns` on that the lab did not cause itself."""
        with self._events_lock:
            ours = self._ours.get(cid)
        return [e for e in self._timeline(cid, since_ns) if ours is None or e[0] < ours]

    def _pauses(self, cid: str, t0_ns: int, t1_ns: int) -> tuple[tuple[tuple[float, float], ...], bool]:
        """When the container was paused during [t0, t1], per its events: (start, end) in s
        since t0, and whether it still was at t1. (A run never starts paused: an exec into a
        paused container is refused.)"""
        spans, start = [], None
        for when, action, _ in self._timeline(cid, t0_ns):
            if action == "pause" and start is None:
                start = when
            elif action in ("unpause", "die", "destroy") and start is not None:
                spans.append((start, min(when, t1_ns)))
                start = None
        if start is not None:
            spans.append((start, t1_ns))
        return tuple(((a - t0_ns) / 1e9, (b - t0_ns) / 1e9) for a, b in spans if b > a), start is not None

    def _paused_run(self, container: Any, t0_ns: int, timeout: float) -> str | None:
        """At the hard timeout: was the run's container paused by someone else (now, or for a
        while during the run)? Then that, not the target, ran out the clock."""
        paused_now = False
        try:
            container.reload()
            paused_now = bool(container.attrs["State"].get("Paused"))
        except ENGINE_ERRORS:
            pass
        pauses, still = self._pauses(container.id, t0_ns, time.time_ns())
        paused_s = sum(b - a for a, b in pauses)
        if not (paused_now or still or paused_s > 0):
            return None
        name = container.name
        if paused_now or still:
            how = (f"was paused by someone else for {paused_s:.1f} s and still was at the hard "
                   f"timeout of {timeout:g} s" if paused_s > 0 else
                   f"was found paused by someone else at the hard timeout of {timeout:g} s")
        else:
            how = (f"was paused by someone else for {paused_s:.1f} s during the run, which then "
                   f"ran past the hard timeout of {timeout:g} s")
        return f"container {name} {how}; the lab removed it"

    def _what_happened(self, container: Any, t0_ns: int, exits: bool = False) -> str | None:
        """A run ended oddly (non-zero exit, engine error): did something outside end it?
        `exits`: the container itself ends with the run (container mode), so only events
        that came from outside count, not its exit."""
        name = container.name
        start = time.monotonic()
        deadline = start + SETTLE_S
        while True:
            with self._events_lock:
                ours = container.id in self._ours
            try:
                container.reload()
                state = container.attrs["State"]
            except docker.errors.NotFound:
                if ours:
                    return (f"container {name} was removed by the lab during the run "
                            "(another cell in it could not be killed)")
                return f"container {name} was removed from outside during the run"
            except ENGINE_ERRORS as exc:
                return f"the Docker engine failed during the run in container {name}: {engine.reason(exc)}"
            events = [e for e in self._events_of(container.id, t0_ns) if e[1] in ENDINGS]
            outside = [e for e in events if e[1] != "die"]
            running = state.get("Running") and not state.get("Restarting")
            if outside or (not exits and (events or not running)):
                if running and "restart" not in [a for _, a, _ in outside] \
                        and time.monotonic() < start + EXIT_WAIT_S:
                    time.sleep(0.05)        # killed, but the engine has not recorded the exit yet
                    continue
                return f"container {name} {self._ending(outside, state)}"
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    @staticmethod
    def _ending(events: list[tuple[int, str, dict]], state: dict) -> str:
        actions = [a for _, a, _ in events]
        if "restart" in actions:
            how = "was restarted from outside"
        elif "stop" in actions:
            how = "was stopped from outside"
        elif "kill" in actions:
            sig = next((attrs.get("signal") for _, a, attrs in events if a == "kill"), None)
            how = "was killed from outside" + (f" (signal {sig})" if sig and sig not in ("9", "KILL", "SIGKILL") else "")
        else:
            how = "stopped unexpectedly"
        running = state.get("Running") and not state.get("Restarting")
        code = "still running" if running and "restart" not in actions else f"exit {state.get('ExitCode')}"
        return f"{how}: {code}, OOMKilled={str(bool(state.get('OOMKilled'))).lower()}"

    # ------------------------------------------------------------ running

    def _run_in_exec(self, target: Target, cmd: Sequence[str], timeout: float,
                     fresh: bool = False, on_state: slots.OnState | None = None) -> ProcessResult:
        container = self._long_lived(target)
        try:
            exec_id, token = self._create_exec(container, cmd)
        except docker.errors.APIError as exc:
            if engine.exec_refused(exc) and not fresh and not self._closed:
                # the container is gone, stopped or paused (removed by hand, PID 1 killed,
                # docker pause): once more in a fresh one
                self._discard(container)
                return self._run_in_exec(target, cmd, timeout, fresh=True, on_state=on_state)
            raise self._engine_error("create an exec", exc) from None
        except ENGINE_ERRORS as exc:
            raise self._engine_error("create an exec", exc) from None
        return self._await_exec(container, exec_id, token, timeout, on_state)

    def _create_exec(self, container: Any, cmd: Sequence[str]) -> tuple[str, str]:
        """An exec of `cmd` in `container`, not started yet, and the token that marks its
        processes for the killer. Raises the engine's error (see lab.engine.exec_refused)."""
        token = uuid.uuid4().hex
        exec_id = engine.transient_retry(self.client.api.exec_create)(
            container.id, list(cmd), stdout=True, stderr=True, user=engine.USER,
            environment={TOKEN_VAR: token, slots.STATE_ENV: "1"}, workdir="/tmp")["Id"]
        return exec_id, token

    def _await_exec(self, container: Any, exec_id: str, token: str, timeout: float,
                    on_state: slots.OnState | None = None) -> ProcessResult:
        """Start the exec and wait for its end under the hard `timeout`: killed by its token
        when it runs out; an outside event that ended or spoiled it comes back as infra and
        its container is replaced (the next run gets a fresh one)."""
        api = self.client.api
        box: dict[str, Any] = {}

        def pump() -> None:                     # the stream ends when the process does
            out, err, states = [], [], slots.StateLines(on_state)
            try:
                for o, e in api.exec_start(exec_id, stream=True, demux=True):
                    if o:
                        out.append(o)
                    if e:
                        err.append(e)
                        states.feed(e)
            except BaseException as exc:        # reported by the caller
                box["error"] = exc
            box["out"] = (b"".join(out), b"".join(err))

        t0, t0_ns = time.monotonic(), time.time_ns()
        worker = threading.Thread(target=pump, name=f"zmqlab-exec-{token[:6]}", daemon=True)
        worker.start()
        worker.join(timeout)
        timed_out = False
        infra = None
        if worker.is_alive():
            infra = self._paused_run(container, t0_ns, timeout)
            if infra is not None:               # do not charge the target: replace the container
                self._discard(container)
                worker.join(KILL_GRACE + 5)
            else:
                killed = self._kill_cell(container, token)
                worker.join(KILL_GRACE)
                if worker.is_alive():           # could not kill inside: kill the container
                    self._discard(container)
                    worker.join(KILL_GRACE + 5)
                    timed_out = True
                else:
                    timed_out = killed != 0      # 0: it ended on its own just in time
        wall = time.monotonic() - t0
        pauses, _ = self._pauses(container.id, t0_ns, time.time_ns())
        out, err = box.get("out") or (None, None)

        def result(code: int | None, infra: str | None = None) -> ProcessResult:
            if infra is not None:
                self._discard(container)            # the retry gets a fresh container
            return ProcessResult(_text(out), slots.strip(_text(err)), code, timed_out and infra is None, wall,
                                 infra=infra, paused_s=sum(b - a for a, b in pauses), pauses=pauses,
                                 container=container.name)

        if infra is not None:
            return result(None, infra)
        if "error" in box and not timed_out:
            return result(None, self._what_happened(container, t0_ns) or
                          f"the Docker engine failed during the run in container {container.name}: "
                          f"{engine.reason(box['error'])}")
        if timed_out:
            return result(None)
        try:
            code = api.exec_inspect(exec_id).get("ExitCode")
        except ENGINE_ERRORS as exc:
            return result(None, self._what_happened(container, t0_ns) or
                          f"the Docker engine failed to tell how the run in container "
                          f"{container.name} ended: {engine.reason(exc)}")
        if code != 0:
            happened = self._what_happened(container, t0_ns)
            if happened:
                return result(code, happened)
        return result(code)

    def _kill_cell(self, container: Any, token: str) -> int:
        """SIGKILL the cell's processes from a second exec; -1 when that failed."""
        try:
            res = container.exec_run([PYTHON, "-S", "-c", KILLER, TOKEN_VAR, token],
                                     user=engine.USER, demux=False)
            return int(res.output.strip() or b"-1") if res.exit_code == 0 else -1
        except Exception:
            return -1

    def _run_in_new_container(self, target: Target, cmd: Sequence[str],
                              timeout: float) -> ProcessResult:
        t0 = time.monotonic()
        container = self._start_container(target, target.name + "-cell", command=cmd)
        t0_ns = time.time_ns()
        timed_out = False
        code: int | None = None
        infra: str | None = None
        out = err = b""
        try:
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                infra = self._paused_run(container, t0_ns, timeout)
                if infra is None:
                    timed_out = True
                    with self._events_lock:
                        self._ours.setdefault(container.id, time.time_ns())
                    try:
                        container.kill()
                    except docker.errors.APIError:
                        pass                    # it ended on its own in the meantime
            if infra is None and not timed_out and code != 0:
                infra = self._what_happened(container, t0_ns, exits=True)
            out = container.logs(stdout=True, stderr=False)
            err = container.logs(stdout=False, stderr=True)
        except ENGINE_ERRORS as exc:
            infra = infra or self._what_happened(container, t0_ns, exits=True) or (
                f"the Docker engine failed during the run in container {container.name}: "
                f"{engine.reason(exc)}")
        finally:
            wall = time.monotonic() - t0
            pauses, _ = self._pauses(container.id, t0_ns, time.time_ns())
            self._remove(container)             # close() sweeps it by label if this fails
        return ProcessResult(_text(out), _text(err), None if (timed_out or infra) else code,
                             timed_out and infra is None, wall, infra=infra,
                             paused_s=sum(b - a for a, b in pauses), pauses=pauses, container=container.name)
