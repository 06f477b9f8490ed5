"""Where a target's base image comes from: a registry, or a Debian root file system the lab
bootstraps itself and `docker import`s. One setting picks it for every target:

  --base-source auto|registry|bootstrap   (or $ZMQLAB_BASE_SOURCE; default auto)

  registry   pull the suite's public image (python:<py>-slim-<suite>, and python:<py>-<suite> as
             builder for compiled kinds), or whatever $ZMQLAB_BASE_REF / $ZMQLAB_BUILDER_REF name
             ({suite} and {python} filled in), e.g. a base pushed to a private registry.
  bootstrap  make zmqlab-base:<suite> (and zmqlab-builder:<suite>) from the Debian mirror: as
             root with mmdebstrap (measured faster than debootstrap, docker/README.md) or
             debootstrap where it is the only tool; without root with `mmdebstrap --mode=unshare`
             (user namespaces; uidmap's newuidmap/newgidmap and a /etc/subuid range). Release
             files are checked against the host's debian-archive-keyring either way.
  auto       a base already in the engine (or a cached tarball) as is; else the registry image
             when the engine can pull it (a short probe: a registry that does not answer is a
             no); else bootstrap as root; else bootstrap without root; else one line naming
             all three ways.

Flavours of a bootstrapped base:
  zmqlab-base:<suite>      minbase + python3, python3-venv, python3-pip  (final stage of all images)
  zmqlab-builder:<suite>   the same + compilers, autotools, cmake, python3-dev  (build stage only)

What a target was built on (ref, digest, source, tool) goes on its image as labels
(lab.engine.base_labels) and from there into every run report (lab.engine.image_provenance).
A pin's own `base = "..."` still wins for that target.
"""
from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import requests.exceptions

from lab import engine
from lab.artifacts import cache_root
from lab.engine import BASE_REPO, BUILDER_REPO, LABEL, transient_retry
from lab.errors import LabError

Say = Callable[[str], None]          # where a line of progress goes (print, lab.session.say)
MIRROR = os.environ.get("ZMQLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")

FLAVOURS = {
    "base": (BASE_REPO, ("python3", "python3-venv", "python3-pip")),
    "builder": (BUILDER_REPO, ("python3", "python3-venv", "python3-pip", "python3-dev",
                                   "build-essential", "autoconf", "automake", "libtool",
                                   "pkg-config", "cmake")),
}

# Environment baked into imported images: a tar has no PATH; .pyc writes would hit the
# read-only root the backend uses, so Python is told not to try.
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    f"LABEL {LABEL}=1",
    'CMD ["/bin/bash"]',
]


@transient_retry
def get_image(client: docker.DockerClient, ref: str):
    """The image named `ref`, or None."""
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def base_ref(suite: str, flavour: str = "base") -> str:
    return f"{FLAVOURS[flavour][0]}:{suite}"


def tarball_path(suite: str, flavour: str = "base") -> Path:
    return cache_root() / "base" / f"{FLAVOURS[flavour][0]}-{suite}.tar"


def debootstrap_command(suite: str, rootfs: Path, flavour: str = "base", mirror: str = MIRROR) -> list[str]:
    packages = ",".join(FLAVOURS[flavour][1])
    return ["debootstrap", "--variant=minbase", f"--include={packages}", suite, str(rootfs), mirror]


MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"


def mmdebstrap_command(suite: str, out: Path, flavour: str = "base", mirror: str = MIRROR,
                       rootless: bool = False) -> list[str]:
    """mmdebstrap writes the tarball itself (no root file system on the host's disk); apt's
    package cache and lists are left out by its own cleanup."""
    packages = ",".join(FLAVOURS[flavour][1])
    # merged /usr the way debootstrap makes it (usr-is-merged); without the hook bookworm gets
    # the usrmerge package and with it perl: 238 MB instead of 191 MB
    hook = [f"--hook-dir={MERGED_USR_HOOK}"] if Path(MERGED_USR_HOOK).is_dir() else []
    return ["mmdebstrap", f"--mode={'unshare' if rootless else 'root'}", "--variant=minbase",
            f"--include={packages}", *hook, "--format=tar", "--quiet", suite, str(out), mirror]


# ---------------------------------------------------------------- which way to bootstrap

def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


def _has_id_range(path: str) -> bool:
    """Does /etc/subuid (or subgid) give this user a range? (name or uid, as shadow reads it)"""
    who = {_user(), str(os.getuid())}
    try:
        with open(path, encoding="utf-8") as fh:
            return any(line.split(":", 1)[0] in who for line in fh if line.strip())
    except OSError:
        return False


def rootless_missing() -> list[str]:
    """What `mmdebstrap --mode=unshare` lacks here as this user (empty: it can run)."""
    lacks = [p for p, cmd in (("mmdebstrap", "mmdebstrap"), ("uidmap", "newuidmap")) if not shutil.which(cmd)]
    for path in ("/etc/subuid", "/etc/subgid"):
        if not _has_id_range(path):
            lacks.append(f"a {path} range for {_user()}")
    return lacks


def bootstrap_tool(progress: Say = print) -> tuple[str, bool]:
    """(tool, rootless) the lab bootstraps with: as root mmdebstrap (installed if missing; it
    measured faster than debootstrap) or debootstrap where mmdebstrap cannot be had; without
    root `mmdebstrap --mode=unshare`, or a one-line LabError naming what is missing."""
    from lab.hostsetup import apt_install
    if os.geteuid() == 0:
        try:
            apt_install(["mmdebstrap"], progress=lambda line: progress("  " + line))
            return "mmdebstrap", False
        except LabError as exc:
            progress(f"  no mmdebstrap ({exc}); using debootstrap")
        apt_install(["debootstrap"], progress=lambda line: progress("  " + line))
        return "debootstrap", False
    lacks = rootless_missing()
    if lacks:
        raise LabError("bootstrapping a base without root needs " + ", ".join(lacks) +
                       " (sudo apt-get install mmdebstrap uidmap)")
    return "mmdebstrap", True


def make_tarball(suite: str, flavour: str, progress: Say) -> tuple[Path, str]:
    """Bootstrap `suite` into the cache's tarball; return it and the tool that made it."""
    tool, rootless = bootstrap_tool(progress)
    out = tarball_path(suite, flavour)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tar.part")
    if tool == "mmdebstrap":
        cmd = mmdebstrap_command(suite, partial, flavour, rootless=rootless)
        progress(f"  {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            lines = (proc.stdout + proc.stderr).strip().splitlines() or ["no output"]
            raise LabError(f"mmdebstrap {suite}{' --mode=unshare' if rootless else ''} failed: {lines[-1]}")
        partial.replace(out)
        return out, "mmdebstrap-unshare" if rootless else "mmdebstrap"
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f"rootfs-{suite}-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = debootstrap_command(suite, rootfs, flavour)
        progress(f"  {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines() or ["no output"]
            raise LabError(f"debootstrap {suite} failed: {lines[-1]}")
        # Downloaded .debs and package lists are not needed inside an image that never runs apt.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise LabError(f"cannot tar the {suite} root file system: {proc.stderr.strip()[-200:]}")
        partial.replace(out)
    return out, "debootstrap"


@transient_retry
def _import(client: docker.DockerClient, tarball: Path, suite: str, flavour: str, tool: str) -> str:
    repo = FLAVOURS[flavour][0]
    changes = IMAGE_CHANGES + [f"LABEL {LABEL}.suite={suite}", f"LABEL {LABEL}.flavour={flavour}",
                               f"LABEL {LABEL}.tool={tool}"]
    # The tarball's bytes go to the engine in the request body, read here as they are sent
    # (the engine may be remote and never sees this host's paths; import_image(src=<path>)
    # would do the same for a file it finds, but take a path it does not find for a URL).
    with open(tarball, "rb") as data:
        client.api.import_image_from_data(data, repository=repo, tag=suite, changes=changes)
    image = get_image(client, base_ref(suite, flavour))
    if image is None:
        raise LabError(f"docker import of {tarball} reported success but {base_ref(suite, flavour)} is missing")
    return image.id


def ensure_base(client: docker.DockerClient, suite: str, rebuild: bool = False,
                progress: Say = print, flavour: str = "base") -> str:
    """Image id of zmqlab-<flavour>:<suite>, importing the cached tarball or bootstrapping it."""
    if flavour not in FLAVOURS:
        raise LabError(f"unknown base flavour {flavour!r}")
    ref = base_ref(suite, flavour)
    if not rebuild:
        image = get_image(client, ref)
        if image is not None:
            return image.id
    tarball = tarball_path(suite, flavour)
    tool = "cached tarball"
    if rebuild or not tarball.exists():
        progress(f"{ref}: bootstrapping {suite} (about a minute)")
        tarball, tool = make_tarball(suite, flavour, progress)
    progress(f"{ref}: importing {tarball}")
    return _import(client, tarball, suite, flavour, tool)


def ensure_builder(client: docker.DockerClient, suite: str, rebuild: bool = False,
                   progress: Say = print) -> str:
    return ensure_base(client, suite, rebuild, progress, flavour="builder")


# ---------------------------------------------------------------- registry bases

def _repo_digest(image, ref: str) -> str:
    """The registry's manifest digest of `ref` (sha256:...) when it was pulled, else ''."""
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for entry in image.attrs.get("RepoDigests") or []:
        name, _, digest = entry.partition("@")
        if name == repo or name == f"docker.io/library/{repo}" or name == f"docker.io/{repo}":
            return digest
    return ""


def ensure_registry_base(client: docker.DockerClient, ref: str, progress: Say = print,
                         pull: bool = False) -> str:
    """A base from a registry: use it when present (unless `pull`), else pull it."""
    image = None if pull else get_image(client, ref)
    if image is not None:
        return image.id
    progress(f"pulling {ref}")
    try:
        return client.images.pull(ref).id
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        why = getattr(exc, "explanation", None) or engine.reason(exc)
        raise LabError(f"cannot pull base image {ref}: {' '.join(str(why).split())}") from None


PROBE_TIMEOUT_S = 10.0
_probed: dict[str, str] = {}


def registry_answers(client: docker.DockerClient, ref: str) -> str:
    """'' when the engine's registry has `ref` (asked for its manifest only, bounded by a short
    timeout), else why not. Remembered for the process: a dead registry is asked once."""
    if ref not in _probed:
        saved = client.api.timeout
        client.api.timeout = PROBE_TIMEOUT_S
        try:
            client.api.inspect_distribution(ref)
            _probed[ref] = ""
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            why = getattr(exc, "explanation", None) or engine.reason(exc)
            _probed[ref] = " ".join(str(why).split())[:160] or "no answer"
        finally:
            client.api.timeout = saved
    return _probed[ref]


# ---------------------------------------------------------------- one setting for every target

BASE_SOURCES = ("auto", "registry", "bootstrap")
BASE_SOURCE_ENV = "ZMQLAB_BASE_SOURCE"
REF_ENV = {"base": "ZMQLAB_BASE_REF", "builder": "ZMQLAB_BUILDER_REF"}
DEFAULT_REFS = {"base": "python:{python}-slim-{suite}", "builder": "python:{python}-{suite}"}
# The official python images carry their own Python in /usr/local; they serve the kinds that
# only need a Python (and, as builder, a compiler): not debian-system (Debian's python3-zmq
# needs Debian's python3) nor libzmq-source (its builder needs cmake and dpkg-source).
DEFAULT_REF_KINDS = ("wheel", "bundled-sdist")


def base_source(value: str | None = None) -> str:
    """The base source asked for: `value`, else $ZMQLAB_BASE_SOURCE, else auto."""
    chosen = (value or os.environ.get(BASE_SOURCE_ENV) or "auto").strip()
    if chosen not in BASE_SOURCES:
        where = "--base-source" if value else BASE_SOURCE_ENV
        raise LabError(f"{where} {chosen!r} is not one of {', '.join(BASE_SOURCES)}")
    return chosen


def registry_refs(suite: str, python: str, kind: str, compiled: bool) -> dict[str, str] | None:
    """{flavour: ref} to pull for a target, or None when the default refs cannot serve its kind."""
    custom = any(os.environ.get(REF_ENV[f]) for f in REF_ENV)
    if not custom and kind not in DEFAULT_REF_KINDS:
        return None
    flavours = ["base"] + (["builder"] if compiled else [])
    return {f: (os.environ.get(REF_ENV[f]) or DEFAULT_REFS[f]).format(suite=suite, python=python)
            for f in flavours}


@dataclass(frozen=True)
class Bases:
    """What a target is built on: refs for the BASE and BUILDER build args, and provenance."""
    source: str                   # 'registry' | 'bootstrap' | 'pinned' (the target's own base = ...)
    base: str
    builder: str
    labels: dict[str, str]


def _describe(client, ref: str, source: str, flavour: str) -> dict[str, str]:
    image = get_image(client, ref)
    if image is None:
        raise LabError(f"base image {ref} vanished while the build was being prepared")
    digest = _repo_digest(image, ref) or image.id
    tool = "pull" if source in ("registry", "pinned") else image.labels.get(f"{LABEL}.tool", "bootstrap")
    return engine.base_labels(flavour, ref, digest, source, tool)


def _bootstrapped(client, suite: str, flavours: list[str], rebuild: bool, done: set[str],
                  progress: Say) -> dict[str, str]:
    refs = {}
    for flavour in flavours:
        key = f"{flavour}:{suite}"
        ensure_base(client, suite, rebuild=rebuild and key not in done, progress=progress, flavour=flavour)
        done.add(key)
        refs[flavour] = base_ref(suite, flavour)
    return refs


def _present(client, refs: dict[str, str]) -> bool:
    return all(get_image(client, r) is not None for r in refs.values())


def resolve(client: docker.DockerClient, target, source: str, compiled: bool, rebuild: bool = False,
            done: set[str] | None = None, progress: Say = print) -> Bases:
    """Make sure the target's base (and builder) exist, from `source`, and say what they are."""
    done = set() if done is None else done
    flavours = ["base"] + (["builder"] if compiled else [])
    if target.base:     # the pin names its own base: it serves both stages
        ensure_registry_base(client, target.base, progress)
        refs, used = {f: target.base for f in flavours}, "pinned"
    else:
        wanted = registry_refs(target.suite, target.python, target.kind, compiled)
        lab_refs = {f: base_ref(target.suite, f) for f in flavours}
        tarballs = all(tarball_path(target.suite, f).exists() for f in flavours)
        if source == "registry":
            if wanted is None:
                raise LabError(f"{target.name}: no registry image serves kind {target.kind} by default "
                               f"(set {REF_ENV['base']}/{REF_ENV['builder']}, or --base-source bootstrap)")
            for ref in dict.fromkeys(wanted.values()):
                ensure_registry_base(client, ref, progress, pull=rebuild or ref not in done)
                done.add(ref)
            refs, used = wanted, "registry"
        elif source == "bootstrap":
            refs, used = _bootstrapped(client, target.suite, flavours, rebuild, done, progress), "bootstrap"
        elif not rebuild and wanted and _present(client, wanted):
            refs, used = wanted, "registry"
        elif not rebuild and (_present(client, lab_refs) or tarballs):
            refs, used = _bootstrapped(client, target.suite, flavours, False, done, progress), "bootstrap"
        else:
            refused = {ref: registry_answers(client, ref) for ref in dict.fromkeys((wanted or {}).values())}
            if wanted and not any(refused.values()):
                for ref in refused:
                    ensure_registry_base(client, ref, progress, pull=True)
                refs, used = wanted, "registry"
            else:
                no_registry = ("no registry image for kind " + target.kind if wanted is None else
                               "; ".join(f"{r}: {why}" for r, why in refused.items() if why))
                progress(f"  no registry base ({no_registry}): bootstrapping")
                try:
                    refs = _bootstrapped(client, target.suite, flavours, rebuild, done, progress)
                    used = "bootstrap"
                except LabError as exc:
                    if os.geteuid() == 0:
                        raise LabError(f"no registry base for {target.name} ({no_registry}) and "
                                       f"bootstrapping as root failed: {exc}") from None
                    raise LabError(
                        f"cannot make a {target.suite} base for {target.name} any of the three ways: "
                        f"(1) registry: {no_registry}; (2) bootstrap as root: not root; "
                        f"(3) bootstrap without root: {exc}. Give the engine a registry "
                        f"(--base-source registry, {REF_ENV['base']}), run once as root, or "
                        f"install mmdebstrap and uidmap") from None
    labels: dict[str, str] = {}
    for flavour in flavours:
        labels.update(_describe(client, refs[flavour], used, flavour))
    return Bases(used, refs["base"], refs.get("builder", refs["base"]), labels)
