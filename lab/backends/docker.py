"""Docker backend: every cell runs inside its target's image, in a sandboxed container.

Image contract: `/opt/venv/bin/python` imports zmq. The repo's scenarios/ directory is
bind-mounted read-only at /opt/zmqlab/scenarios and cells run
`/opt/venv/bin/python -m scenarios ARGV` with PYTHONPATH=/opt/zmqlab.

Design, measured with measure_overhead (trivial `python -c pass`, n=20, engine 20.10 on
fuse-overlayfs, 2 cores): one long-lived container per target (docker-init as PID 1
reaping zombies, an idle python as its child) runs each cell through a docker exec,
~55-120 ms per cell including ~25-45 ms of interpreter start, vs ~270-720 ms for a fresh
container per cell; the long-lived container costs ~0.2-0.4 s once per target per run.
mode="container" keeps the per-run design available (also the base for a later
sender/receiver split in separate containers, via _start_container).

Concurrent run() calls for one target share its container (and its pids/memory limits).

Hard timeout, on top of the scenario's own watchdog: each exec carries a unique
ZMQLAB_CELL=<token> in its environment; when the deadline passes the lab runs a second
exec that SIGKILLs every process whose environment holds that token and every process in
the session of one (the cell and anything it spawned), and if that exec fails or the cell
still has not ended after a grace period, kills the whole container (a fresh one serves
the next cell).
"""
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import docker
import docker.errors
import requests.exceptions

from lab import engine
from lab.backends.base import ProcessResult
from lab.errors import LabError
from lab.targets import Target

IMAGE_REPO = "zmqlab-target"
PYTHON = "/opt/venv/bin/python"
MOUNT_ROOT = "/opt/zmqlab"
SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
USER = "65534:65534"
KILL_GRACE = 1.0      # s between the in-container kill and killing the container
TOKEN_VAR = "ZMQLAB_CELL"

ENV = {
    "PYTHONPATH": MOUNT_ROOT,
    "PYTHONDONTWRITEBYTECODE": "1",
    "TMPDIR": "/tmp",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
}

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


def image_name(target: Target, repo: str = IMAGE_REPO) -> str:
    return f"{repo}:{target.name}"


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


class DockerBackend:
    name = "docker"

    def __init__(self, run_id: str, *, client: docker.DockerClient | None = None,
                 scenarios_dir: str | os.PathLike[str] | None = None,
                 mode: str = "exec", image_repo: str = IMAGE_REPO,
                 check_import: str | None = "zmq",
                 mem_limit: str = "512m", pids_limit: int = 512, tmpfs_size: str = "256m"):
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
        self.client = client or engine.connect()
        self.labels = engine.run_labels(run_id)
        self.close_errors: list[str] = []
        self._closed = False
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}          # target name -> long-lived container
        self._ready: dict[str, str | None] = {}        # target name -> prepare() verdict
        try:
            self.swept = engine.sweep_orphans(self.client, self.close_errors)
            version = self.client.version().get("Version", "?")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise LabError(f"Docker engine at {engine.engine_address()} failed: "
                           f"{engine.reason(exc)}") from None
        per = "one container per target, a docker exec per cell" if mode == "exec" \
            else "a fresh container per cell"
        self.description = (f"Docker engine {version} at {engine.engine_address()} "
                            f"({per}, sandboxed: no network, uid 65534, read-only root)")

    # ------------------------------------------------------------ Backend protocol

    def prepare(self, target: Target) -> str | None:
        if target.broken:
            return "cannot be built here: " + target.broken
        if target.name in self._ready:
            return self._ready[target.name]
        image = image_name(target, self.image_repo)
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return f"image {image} is not built; run `invoke images --targets {target.name}`"
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_error("look up image " + image, exc) from None
        verdict: str | None = None
        if self.check_import:
            probe = self._run_cmd(target, [PYTHON, "-c", f"import {self.check_import}"], 60.0)
            if probe.returncode != 0:
                last = (probe.stderr.strip().splitlines() or ["timed out" if probe.timed_out
                                                              else f"exit {probe.returncode}"])[-1]
                verdict = f"image {image}: {PYTHON} cannot import {self.check_import}: {last}"
        self._ready[target.name] = verdict
        return verdict

    def run(self, target: Target, argv: Sequence[str], timeout: float) -> ProcessResult:
        return self._run_cmd(target, [PYTHON, "-m", "scenarios", *map(str, argv)], timeout)

    def release(self, target: Target) -> None:
        """The target's cells are done: remove its long-lived container now rather than at
        close(), so a sweep over many targets keeps one container up, not all of them."""
        with self._lock:
            container = self._containers.get(target.name)
        if container is not None:
            self._discard(target, container)

    def close(self) -> None:
        """Remove every container/network/volume of this run. Idempotent, lock-free, never
        raises (safe from a finally block or a signal handler); problems land in
        self.close_errors."""
        self._closed = True
        self._containers.clear()
        try:
            engine.remove_run(self.client, self.run_id, self.close_errors)
        except Exception as exc:
            self.close_errors.append(engine.reason(exc))

    def __enter__(self) -> DockerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ containers

    def _host_config(self) -> dict[str, Any]:
        return dict(
            network_mode="none", user=USER, cap_drop=["ALL"], read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size},mode=1777"},
            pids_limit=self.pids_limit, mem_limit=self.mem_limit, memswap_limit=self.mem_limit,
            security_opt=["no-new-privileges"], init=True,
            volumes={str(self.scenarios_dir): {"bind": f"{MOUNT_ROOT}/scenarios", "mode": "ro"}},
            environment=ENV, working_dir="/tmp",
        )

    def _start_container(self, target: Target, name: str, command: Sequence[str] | None = None,
                         network: str | None = None, extra_labels: dict[str, str] | None = None) -> Any:
        """Create and start a sandboxed container of `target`'s image. `command` None makes
        a long-lived idle container (for exec); `network` names a project network (made by
        engine.create_network) to join instead of having none."""
        if self._closed:
            raise LabError("the docker backend is closed")
        cfg = self._host_config()
        if network:
            cfg["network_mode"] = network
        unique = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"zmqlab-{self.run_id}-{name}-{uuid.uuid4().hex[:6]}")
        labels = {**self.labels, **(extra_labels or {})}
        try:
            container = engine.transient_retry(self.client.containers.create)(
                image_name(target, self.image_repo), entrypoint=list(command or IDLE),
                command=[], name=unique, labels=labels, detach=True, **cfg)
            if self._closed:            # close() ran while we created: do not leak it
                container.remove(force=True)
                raise LabError("the docker backend is closed")
            engine.transient_retry(container.start)()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_error(f"start a container of {image_name(target, self.image_repo)}",
                                     exc) from None
        return container

    def _long_lived(self, target: Target) -> Any:
        with self._lock:
            c = self._containers.get(target.name)
            if c is None:
                c = self._start_container(target, target.name)
                self._containers[target.name] = c
            return c

    def _discard(self, target: Target, container: Any) -> None:
        with self._lock:
            if self._containers.get(target.name) is container:
                del self._containers[target.name]
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            self.close_errors.append(engine.reason(exc))

    def _engine_error(self, what: str, exc: BaseException) -> LabError:
        if isinstance(exc, LabError):
            return exc
        return LabError(f"Docker engine at {engine.engine_address()} failed to {what}: "
                        f"{engine.reason(exc)}")

    # ------------------------------------------------------------ running

    def _run_cmd(self, target: Target, cmd: Sequence[str], timeout: float) -> ProcessResult:
        if self.mode == "container":
            return self._run_in_new_container(target, cmd, timeout)
        return self._run_in_exec(target, cmd, timeout)

    def _run_in_exec(self, target: Target, cmd: Sequence[str], timeout: float,
                     fresh: bool = False) -> ProcessResult:
        container = self._long_lived(target)
        api = self.client.api
        token = uuid.uuid4().hex
        try:
            exec_id = engine.transient_retry(api.exec_create)(
                container.id, list(cmd), stdout=True, stderr=True, user=USER,
                environment={TOKEN_VAR: token}, workdir="/tmp")["Id"]
        except docker.errors.APIError as exc:
            if exc.status_code in (404, 409) and not fresh and not self._closed:
                # the container is gone or stopped (removed by hand, PID 1 killed): once more
                # in a fresh one
                self._discard(target, container)
                return self._run_in_exec(target, cmd, timeout, fresh=True)
            raise self._engine_error("create an exec", exc) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_error("create an exec", exc) from None

        box: dict[str, Any] = {}

        def pump() -> None:                     # exec_start blocks until the process ends
            try:
                box["out"] = api.exec_start(exec_id, demux=True)
            except BaseException as exc:        # reported by the caller
                box["error"] = exc

        t0 = time.monotonic()
        worker = threading.Thread(target=pump, name=f"zmqlab-exec-{token[:6]}", daemon=True)
        worker.start()
        worker.join(timeout)
        timed_out = False
        if worker.is_alive():
            killed = self._kill_cell(container, token)
            worker.join(KILL_GRACE)
            if worker.is_alive():               # could not kill inside: kill the container
                self._discard(target, container)
                worker.join(KILL_GRACE + 5)
                timed_out = True
            else:
                timed_out = killed != 0          # 0: it ended on its own just in time
        wall = time.monotonic() - t0
        if "error" in box and not timed_out:
            raise self._engine_error("run an exec", box["error"])
        out, err = box.get("out") or (None, None)
        if timed_out:
            return ProcessResult(_text(out), _text(err), None, True, wall)
        try:
            code = api.exec_inspect(exec_id).get("ExitCode")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_error("inspect an exec", exc) from None
        return ProcessResult(_text(out), _text(err), code, False, wall)

    def _kill_cell(self, container: Any, token: str) -> int:
        """SIGKILL the cell's processes from a second exec; -1 when that failed."""
        try:
            res = container.exec_run([PYTHON, "-S", "-c", KILLER, TOKEN_VAR, token],
                                     user=USER, demux=False)
            return int(res.output.strip() or b"-1") if res.exit_code == 0 else -1
        except Exception:
            return -1

    def _run_in_new_container(self, target: Target, cmd: Sequence[str],
                              timeout: float) -> ProcessResult:
        t0 = time.monotonic()
        container = self._start_container(target, target.name + "-cell", command=cmd)
        timed_out = False
        code: int | None = None
        try:
            try:
                code = container.wait(timeout=timeout)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass                        # it ended on its own in the meantime
            wall = time.monotonic() - t0
            out = container.logs(stdout=True, stderr=False)
            err = container.logs(stdout=False, stderr=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._engine_error("run a container", exc) from None
        finally:
            try:
                container.remove(force=True, v=True)
            except Exception:
                pass                            # close() sweeps it by label
        return ProcessResult(_text(out), _text(err), None if timed_out else code,
                             timed_out, wall)


def measure_overhead(client: docker.DockerClient, target: Target, n: int = 20,
                     image_repo: str = IMAGE_REPO,
                     scenarios_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Time a trivial `python -c pass` cell n times in each design; ms per cell.

    Returns {"target", "image", "n", "container_per_run_ms", "exec_ms",
    "exec_container_start_ms", "python_start_ms", "kept"}: medians (and means) in ms.
    The exec design's one-off container start is reported separately (paid once per target
    per lab run); python_start_ms is the interpreter's own start inside the container, so
    the container overhead of a design is its figure minus python_start_ms.
    """
    import statistics
    cmd = [PYTHON, "-c", "pass"]
    out: dict[str, Any] = {"target": target.name, "image": image_name(target, image_repo), "n": n}
    run_id = f"bench{os.getpid()}-{uuid.uuid4().hex[:6]}"
    for mode in ("container", "exec"):
        with DockerBackend(run_id + mode[0], client=client, mode=mode, image_repo=image_repo,
                           check_import=None, scenarios_dir=scenarios_dir
                           or (SCENARIOS_DIR if SCENARIOS_DIR.is_dir() else Path("/tmp"))) as b:
            if mode == "exec":
                t0 = time.monotonic()
                b._long_lived(target)
                out["exec_container_start_ms"] = round((time.monotonic() - t0) * 1e3, 1)
            times = []
            for _ in range(n):
                t0 = time.monotonic()
                r = b._run_cmd(target, cmd, 30.0)
                times.append((time.monotonic() - t0) * 1e3)
                if r.returncode != 0:
                    raise LabError(f"benchmark cell failed in {mode} mode: {r.stderr.strip()[-200:]}")
            if mode == "exec":
                timer = ("import subprocess, sys, time, statistics\nts = []\n"
                         f"for _ in range({n}):\n    t = time.monotonic()\n"
                         f"    subprocess.run({cmd!r})\n    ts.append(time.monotonic() - t)\n"
                         "print(statistics.median(ts) * 1e3)")
                r = b._run_cmd(target, [PYTHON, "-c", timer], 120.0)
                out["python_start_ms"] = round(float(r.stdout), 1) if r.returncode == 0 else None
            key = "container_per_run_ms" if mode == "container" else "exec_ms"
            out[key] = round(statistics.median(times), 1)
            out[key.replace("_ms", "_mean_ms")] = round(statistics.fmean(times), 1)
    out["kept"] = "exec" if out["exec_ms"] <= out["container_per_run_ms"] else "container"
    return out
