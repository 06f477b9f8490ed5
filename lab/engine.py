"""The Docker engine edge, in one place: connecting, image names, labels, the sandbox every
lab container runs in, the one bounded retry policy, and cleanup.

Everything the lab creates on the engine (containers, networks, volumes) carries

    org.zmqlab=1                 it is ours
    org.zmqlab.run=<run-id>      which lab run made it (close() removes exactly these)
    org.zmqlab.pid=<pid>         the lab process that made it ...
    org.zmqlab.pidstart=<ticks>  ... and when that process started (guards against pid reuse)
    org.zmqlab.host=<hostname>   ... and on which machine (pids mean nothing elsewhere)

so a lab killed with SIGKILL leaves objects that the next lab recognises as orphans
(their pid is dead on this host) and removes, while a concurrently running lab's objects
(pid alive) are never touched. Images are never removed here.

Every container the lab starts (a target's cell container, an image's verification
container) gets the same sandbox (sandbox()): uid 65534, no network, every capability
dropped, no-new-privileges, a read-only root with a tmpfs /tmp, pids and memory limits.
Nothing of this host's file system is in the engine's view (it may be remote: DOCKER_HOST or
--engine, use()): a cell container's scenarios arrive through the API into a volume of its own
(sandbox(payload=...)), never as a bind mount.
The one exception is the network of the `containers` topology's peers (lab/backends/peers.py):
they join their run's own internal network (no route out, nothing published), and only that
differs. The other is the fault injector's sidecar (sidecar_sandbox()): NET_ADMIN only, inside a
peer's network namespace, for the length of one fault.
"""
from __future__ import annotations

import os
import re
import socket
from typing import Any, Callable, Mapping, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from lab.errors import LabError

LABEL = "org.zmqlab"
LABEL_RUN = "org.zmqlab.run"
LABEL_PID = "org.zmqlab.pid"
LABEL_PIDSTART = "org.zmqlab.pidstart"
LABEL_HOST = "org.zmqlab.host"

# Image names: zmqlab-target:<target> (one per pin), built on zmqlab-base:<suite> and, for the
# compiled kinds, zmqlab-builder:<suite> (lab/base_image.py).
# $ZMQLAB_IMAGE_NAMESPACE=<ns> prefixes all three (<ns>-zmqlab-target:...): tests and trials
# build in their own namespace, never touching (or reusing) the real images.
NAMESPACE_ENV = "ZMQLAB_IMAGE_NAMESPACE"
LABEL_NAMESPACE = "org.zmqlab.namespace"


_NS = os.environ.get(NAMESPACE_ENV, "")


def image_namespace() -> str:
    """The namespace this process builds in ('' for the real images); checked before a build."""
    if _NS and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", _NS):
        raise LabError(f"{NAMESPACE_ENV}={_NS!r} is not allowed (lowercase letters, digits, '-'; at most 40)")
    return _NS


TARGET_REPO = f"{_NS}-zmqlab-target" if _NS else "zmqlab-target"
BASE_REPO = f"{_NS}-zmqlab-base" if _NS else "zmqlab-base"
BUILDER_REPO = f"{_NS}-zmqlab-builder" if _NS else "zmqlab-builder"
LAB_REPOS = (TARGET_REPO, BUILDER_REPO, BASE_REPO)

# What a target image was built on (lab/images.py puts these on it; the Docker backend copies
# them into every run report's "image" provenance): the base's ref, digest (the registry's
# manifest digest when pulled, else the image id), where it came from and how it was made.
BASE_LABELS = ("ref", "digest", "source", "tool")
# sha256 of the recipe files (docker/<kind>/) and the pin entry that made a target image
# (lab/images.py puts it on at build time; run reports record it: provenance.recipe)
RECIPE_LABEL = f"{LABEL}.recipe-hash"

# The sandbox (sandbox()); the image contract: /opt/venv/bin/python imports zmq.
USER = "65534:65534"
PYTHON = "/opt/venv/bin/python"
MOUNT_ROOT = "/opt/zmqlab"
SANDBOX_ENV = {
    "PYTHONPATH": MOUNT_ROOT,
    "PYTHONDONTWRITEBYTECODE": "1",
    "TMPDIR": "/tmp",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
}
MEM_LIMIT = "512m"
PIDS_LIMIT = 512
TMPFS_SIZE = "256m"

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
ENGINE_SCHEMES = ("unix", "tcp", "ssh", "http", "https")
# The oldest engine API the lab uses (Docker 20.10: the peers' network option inhibit_ipv4,
# labelled anonymous volumes for the scenarios' payload); an older engine is refused in one line.
MIN_API_VERSION = "1.41"
CONNECT_TIMEOUT = 5.0     # s: ping / version at connection time
API_TIMEOUT = 60.0        # s: ordinary engine calls afterwards (create on a slow storage driver)

T = TypeVar("T")


# ---------------------------------------------------------------- connection

def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def reason(exc: BaseException) -> str:
    """The most specific one-line cause inside a docker/requests exception chain."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        if isinstance(e, BaseException):
            stack.extend(a for a in e.args if isinstance(a, BaseException))
            stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    text = str(exc).replace("Error while fetching server API version: ", "")
    return " ".join(text.split()) or type(exc).__name__


def use(url: str | None) -> None:
    """`--engine URL`: the engine this process (and the processes it starts: the reaper, the
    tests' labs) talks to, exactly as DOCKER_HOST names it: unix:///path, tcp://host:port or
    ssh://[user@]host[:port] (the Docker SDK's own ssh support, through paramiko: the user's
    ~/.ssh/config, known_hosts and keys). None or '' keeps DOCKER_HOST (or the local socket)."""
    if not url:
        return
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ENGINE_SCHEMES or not url.split("://", 1)[1].strip("/"):
        raise LabError(f"--engine {url!r} is not an engine URL (unix:///path, tcp://host:port "
                       "or ssh://user@host[:port])")
    os.environ["DOCKER_HOST"] = url


def is_remote(address: str | None = None) -> bool:
    """Does the engine live elsewhere (ssh://, tcp://), so nothing of this host's file system
    is in its view? (The lab never assumes it is: this only decorates reports and errors.)"""
    return not (address or engine_address()).startswith(("unix://", "npipe://"))


def _api_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(version).split("."))
    except ValueError:
        return (0,)


def why_not(exc: BaseException) -> str:
    """What failed when reaching an engine, in words: unreachable, ssh authentication refused,
    an unknown host key, or the engine's own answer."""
    try:
        import paramiko                 # only with ssh:// engines (requirements.txt)
    except ImportError:                 # pragma: no cover
        paramiko = None                 # type: ignore[assignment]
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if paramiko is not None:
            if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
                causes = {x.strerror or str(x) for x in e.errors.values()}
                return "; ".join(sorted(causes)) or str(e)
            if isinstance(e, paramiko.AuthenticationException):
                return f"ssh authentication refused ({' '.join(str(e).split()) or 'no key it accepts'})"
            if isinstance(e, paramiko.BadHostKeyException):
                return f"ssh host key mismatch ({e})"
            if isinstance(e, paramiko.SSHException) and "known_hosts" in str(e):
                return f"unknown ssh host key ({e}; add it to ~/.ssh/known_hosts)"
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return reason(exc)


def _answered(why: str) -> bool:
    """Did the engine (or its ssh host) answer, and refuse or fall short? (why_not's words)"""
    return why.startswith(("ssh ", "unknown ssh", "engine too old"))


def _client(timeout: float) -> tuple[docker.DockerClient | None, str]:
    try:
        # ssh:// goes through paramiko (use_ssh_client=False): it reads ~/.ssh/config (Port,
        # User, IdentityFile, ProxyCommand) and ~/.ssh/known_hosts as OpenSSH would, needs no
        # `ssh` binary, and reports a refused key as its own exception (why_not)
        client = docker.from_env(timeout=timeout, max_pool_size=32, use_ssh_client=False)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        return None, why_not(exc)
    except Exception as exc:            # paramiko's own errors (auth, host key) at connect
        if type(exc).__module__.split(".")[0] != "paramiko":
            raise
        return None, why_not(exc)
    try:
        api = client.version().get("ApiVersion", "0")
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        client.close()
        return None, why_not(exc)
    if _api_tuple(api) < _api_tuple(MIN_API_VERSION):
        client.close()
        return None, f"engine too old (API {api}; the lab needs {MIN_API_VERSION}, Docker 20.10 or later)"
    client.api.timeout = API_TIMEOUT
    return client, ""


def connect(timeout: float = CONNECT_TIMEOUT) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (default: the local socket; --engine sets
    it, see use()).

    The engine must answer a ping within `timeout` s and speak API MIN_API_VERSION or later;
    otherwise a one-line LabError naming the engine and what failed (unreachable, ssh
    authentication refused, unknown host key, too old); when none answers at all, how to run
    without Docker.
    """
    client, why = _client(timeout)
    if client is None:
        if _answered(why):
            raise LabError(f"Docker engine at {engine_address()}: {why}")
        raise LabError(f"no Docker engine answers at {engine_address()}: {why}; "
                       "use --backend local to run in local processes")
    return client


def available(timeout: float = 2.0) -> tuple[bool, str]:
    """For the tasks layer to pick the default backend: (True, "Docker engine <version> at
    <address>") when an engine answers, else (False, "<address>: <reason>"), e.g.
    (False, "unix:///var/run/docker.sock: No such file or directory").
    A remote engine (ssh://, tcp://) that fails is a LabError instead: whoever named one
    wants it, not local processes."""
    client, why = _client(timeout)
    if client is None:
        if is_remote() or _answered(why):   # an engine named elsewhere: never a silent fallback
            prefix = "Docker engine at" if _answered(why) else "no Docker engine answers at"
            raise LabError(f"{prefix} {engine_address()}: {why}")
        return False, f"{engine_address()}: {why}"
    try:
        version = client.version().get("Version", "?")
    except Exception:               # answered the ping; the version is only decoration
        version = "?"
    finally:
        client.close()
    return True, f"Docker engine {version} at {engine_address()}"


# ---------------------------------------------------------------- bounded retries

def exec_refused(exc: docker.errors.APIError) -> bool:
    """The engine would not create an exec because the container is gone (404), or stopped or
    paused (409): a fresh container can take it."""
    return exc.status_code in (404, 409)


def is_transient(exc: BaseException) -> bool:
    """Engine hiccups worth another try: no connection, a timeout, a 5xx answer."""
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, docker.errors.APIError) and not isinstance(exc, docker.errors.NotFound):
        code = exc.status_code or 0
        return code >= 500 and "executable file not found" not in str(exc)
    return False


def retrying(also: Callable[[BaseException], bool] | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """The lab's one retry policy for engine calls: 3 tries, 0.2 s doubling up to 2 s apart,
    on transient errors (is_transient) and on whatever `also` accepts; then the error."""
    def worth(exc: BaseException) -> bool:
        return is_transient(exc) or (also is not None and also(exc))
    return retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.2, max=2.0),
                 retry=retry_if_exception(worth), reraise=True)


transient_retry: Callable[[Callable[..., T]], Callable[..., T]] = retrying()


# ---------------------------------------------------------------- labels

def _start_ticks(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), '' when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def run_labels(run_id: str) -> dict[str, str]:
    pid = os.getpid()
    return {LABEL: "1", LABEL_RUN: run_id, LABEL_PID: str(pid),
            LABEL_PIDSTART: _start_ticks(pid), LABEL_HOST: socket.gethostname()}


def image_name(target: Any, repo: str = TARGET_REPO) -> str:
    """`repo:<target name>`; `target` is a Target or its name."""
    return f"{repo}:{getattr(target, 'name', target)}"


def base_labels(flavour: str, ref: str, digest: str, source: str, tool: str) -> dict[str, str]:
    """org.zmqlab.<flavour>.{ref,digest,source,tool} for a target image ('base' or 'builder')."""
    values = dict(ref=ref, digest=digest, source=source, tool=tool)
    return {f"{LABEL}.{flavour}.{k}": values[k] for k in BASE_LABELS if values[k]}


def image_provenance(image: Any) -> dict[str, Any]:
    """What a run report records about the image it ran in: its name, id and, when the image
    says (built by a lab that labels its bases), the base and builder it was built on."""
    labels = getattr(image, "labels", None) or {}
    prov: dict[str, Any] = {"ref": (getattr(image, "tags", None) or [""])[0], "id": getattr(image, "id", "")}
    for flavour in ("base", "builder"):
        part = {k: labels[f"{LABEL}.{flavour}.{k}"] for k in BASE_LABELS if f"{LABEL}.{flavour}.{k}" in labels}
        if part.get("ref"):
            prov[flavour] = part
    return prov


def engine_identity(client: docker.DockerClient) -> dict[str, Any]:
    """Which engine ran a run (provenance.engine): its ID, version, API version, address and
    whether it is remote (ssh://, tcp://) or this host's socket."""
    info, version = client.info(), client.version()
    return {"id": info.get("ID") or "", "name": info.get("Name") or "",
            "version": version.get("Version") or "", "api": version.get("ApiVersion") or "",
            "address": engine_address(), "remote": is_remote()}


def run_provenance(image: Any, engine_id: Mapping[str, Any], scenarios: str) -> dict[str, Any]:
    """What makes a verdict traceable (a run report's "provenance"): the image it ran in (its
    ID, a content digest, and its tag), the recipe hash that built it, the engine, and the
    content hash of the scenarios the run executed."""
    labels = getattr(image, "labels", None) or {}
    return {"image": getattr(image, "id", ""), "ref": (getattr(image, "tags", None) or [""])[0],
            "recipe": labels.get(RECIPE_LABEL, ""), "engine": dict(engine_id), "scenarios": scenarios}


# ---------------------------------------------------------------- the sandbox

def sidecar_sandbox(peer_id: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The fault injector's sidecar (lab/backends/faults.py, docs/faults.md): the one lab
    container with a capability, NET_ADMIN and nothing else, in a peer's network namespace
    (its rules live and die there; the host's are never touched). Root inside, because iptables
    and tc need it; otherwise as tight as a cell: read-only root, no new privileges, small limits."""
    return dict(network_mode=f"container:{peer_id}", user="0:0",
                cap_drop=["ALL"], cap_add=["NET_ADMIN"], security_opt=["no-new-privileges"],
                read_only=True, tmpfs={"/run": "rw,nosuid,nodev,size=1m"}, pids_limit=32,
                mem_limit="64m", memswap_limit="64m", labels=dict(labels))


def sandbox(*, mem_limit: str = MEM_LIMIT, pids_limit: int = PIDS_LIMIT, tmpfs_size: str = TMPFS_SIZE,
            payload: str | None = None, labels: Mapping[str, str] | None = None,
            network: str | None = None) -> dict[str, Any]:
    """Keyword arguments for containers.create() that every lab container gets. Nothing of the
    host's file system is in it (the engine may be remote): `payload` names a directory inside
    that gets a fresh anonymous volume of its own, carrying `labels` (the run's, so cleanup
    finds it) and removed with its container, for the lab to fill through the engine's API
    (put_archive) before the start: the scenarios of cell containers. The root stays read-only
    (the engine refuses put_archive into a read-only root, not into a volume); the volume's
    files belong to root and the sandbox's uid cannot write them. `network` names a lab network
    (internal, created by the lab) to join at create time instead of having none: the peers of
    the containers topology talk over it. Nothing else is relaxed for them."""
    # docker-py refuses `network` together with `network_mode`: exactly one of the two
    where: dict[str, Any] = {"network": network} if network else {"network_mode": "none"}
    extra: dict[str, Any] = {}
    if payload:
        extra["mounts"] = [docker.types.Mount(payload, None, type="volume", no_copy=True,
                                              labels=dict(labels or {}))]
    return dict(
        **where, user=USER, cap_drop=["ALL"], read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={tmpfs_size},mode=1777"},
        pids_limit=pids_limit, mem_limit=mem_limit, memswap_limit=mem_limit,
        security_opt=["no-new-privileges"], init=True, **extra,
        environment=dict(SANDBOX_ENV), working_dir="/tmp",
    )


# The network the peers of the containers topology join (lab/backends/peers.py), the other half
# of their sandbox: a bridge of their own with no route out (internal) and without an IPv4
# address of the host on it (inhibit_ipv4), since an internal network only drops forwarded
# traffic and the bridge's address would still reach the host's own sockets.
PEER_NETWORK = dict(driver="bridge", internal=True,
                    options={"com.docker.network.bridge.inhibit_ipv4": "true"})


def owner_alive(labels: dict[str, str]) -> bool:
    """Is the lab process that labelled an object still running? Objects from another host
    or without a readable pid count as alive (we cannot tell, so we leave them alone)."""
    if labels.get(LABEL_HOST, socket.gethostname()) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return True
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                        # exists, owned by someone else
    started = labels.get(LABEL_PIDSTART, "")
    now = _start_ticks(pid)
    return not (started and now and started != now)   # a different process reuses the pid


# ---------------------------------------------------------------- cleanup

def _conflict(exc: BaseException) -> bool:
    return isinstance(exc, docker.errors.APIError) and exc.status_code == 409


# a removal can meet a container still starting or being removed (409), or a slow engine:
# a few short tries, then it is reported (and a later lab's orphan sweep gets it)
_removal_retry = retrying(also=_conflict)


def _remove_all(objs: list[Any], remove: Callable[[Any], None], errors: list[str]) -> int:
    n = 0
    for obj in objs:
        try:
            _removal_retry(remove)(obj)
            n += 1
        except docker.errors.NotFound:
            pass
        except Exception as exc:    # best effort: report, go on with the others
            errors.append(f"{getattr(obj, 'name', obj)}: {reason(exc)}")
    return n


def _ours(client: docker.DockerClient, label_filter: str) -> tuple[list, list, list]:
    flt = {"label": [f"{LABEL}=1", label_filter] if label_filter else [f"{LABEL}=1"]}
    return (client.containers.list(all=True, filters=flt, ignore_removed=True),
            client.networks.list(filters=flt),
            client.volumes.list(filters=flt))


def _remove_objects(containers: list, networks: list, volumes: list, errors: list[str]) -> int:
    # containers first: networks and volumes in use cannot go
    n = _remove_all(containers, lambda c: c.remove(force=True, v=True), errors)
    n += _remove_all(networks, lambda x: x.remove(), errors)
    n += _remove_all(volumes, lambda x: x.remove(force=True), errors)
    return n


def remove_run(client: docker.DockerClient, run_id: str, errors: list[str] | None = None) -> int:
    """Remove every container, network and volume labelled with `run_id`; return how many."""
    errors = [] if errors is None else errors
    return _remove_objects(*_ours(client, f"{LABEL_RUN}={run_id}"), errors)


def sweep_orphans(client: docker.DockerClient, errors: list[str] | None = None) -> int:
    """Remove objects left by lab processes that are gone (e.g. killed with SIGKILL)."""
    errors = [] if errors is None else errors
    containers, networks, volumes = _ours(client, LABEL_PID)
    dead = lambda objs, labels: [o for o in objs if not owner_alive(labels(o))]  # noqa: E731
    return _remove_objects(
        dead(containers, lambda c: c.labels),
        dead(networks, lambda x: x.attrs.get("Labels") or {}),
        dead(volumes, lambda x: x.attrs.get("Labels") or {}),
        errors)
