"""Base images made offline-friendly: debootstrap a Debian suite on the host, `docker import` it.

There is no registry here, so no `FROM debian:bookworm`. Instead the host debootstraps a
minimal root file system from the Debian mirror (its Release files are checked against the
host's debian-archive-keyring, so the packages are as trustworthy as apt's), tars it into the
cache and imports it as an image. Two flavours per suite:

  zmqlab-base:<suite>      minbase + python3, python3-venv, python3-pip  (final stage of all images)
  zmqlab-builder:<suite>   the same + compilers, autotools, cmake, python3-dev  (build stage only)

A user with a registry may set `base = "python:3.11-slim-bookworm"` on a target; then that
image is pulled and used for both stages (it must carry a compiler for compiled kinds).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from lab.artifacts import cache_root
from lab.engine import BASE_REPO, BUILDER_REPO, LABEL, transient_retry
from lab.errors import LabError

Progress = Callable[[str], None]
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


def _require_debootstrap(progress: Progress) -> str:
    from lab.hostsetup import apt_install
    # Not root: a one-line error naming the package (a user with a registry may instead set
    # base = "python:3.11-slim-bookworm" on the target).
    apt_install(["debootstrap"], progress=lambda line: progress("  " + line))
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def make_tarball(suite: str, flavour: str, progress: Progress) -> Path:
    """Debootstrap `suite` and tar the root file system into the cache (needs root)."""
    if os.geteuid() != 0:
        raise LabError(f"making {base_ref(suite, flavour)} needs root (debootstrap chroots); "
                       "run as root once, or set base = \"python:3.11-slim-bookworm\" on the target")
    _require_debootstrap(progress)
    out = tarball_path(suite, flavour)
    out.parent.mkdir(parents=True, exist_ok=True)
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
        partial = out.with_suffix(".tar.part")
        proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise LabError(f"cannot tar the {suite} root file system: {proc.stderr.strip()[-200:]}")
        partial.replace(out)
    return out


@transient_retry
def _import(client: docker.DockerClient, tarball: Path, suite: str, flavour: str) -> str:
    repo = FLAVOURS[flavour][0]
    changes = IMAGE_CHANGES + [f"LABEL {LABEL}.suite={suite}", f"LABEL {LABEL}.flavour={flavour}"]
    client.api.import_image(src=str(tarball), repository=repo, tag=suite, changes=changes)
    image = get_image(client, base_ref(suite, flavour))
    if image is None:
        raise LabError(f"docker import of {tarball} reported success but {base_ref(suite, flavour)} is missing")
    return image.id


def ensure_base(client: docker.DockerClient, suite: str, rebuild: bool = False,
                progress: Progress = print, flavour: str = "base") -> str:
    """Image id of zmqlab-<flavour>:<suite>, importing the cached tarball or debootstrapping it."""
    if flavour not in FLAVOURS:
        raise LabError(f"unknown base flavour {flavour!r}")
    ref = base_ref(suite, flavour)
    if not rebuild:
        image = get_image(client, ref)
        if image is not None:
            return image.id
    tarball = tarball_path(suite, flavour)
    if rebuild or not tarball.exists():
        progress(f"{ref}: debootstrapping {suite} (about a minute)")
        make_tarball(suite, flavour, progress)
    progress(f"{ref}: importing {tarball}")
    return _import(client, tarball, suite, flavour)


def ensure_builder(client: docker.DockerClient, suite: str, rebuild: bool = False,
                   progress: Progress = print) -> str:
    return ensure_base(client, suite, rebuild, progress, flavour="builder")


def ensure_registry_base(client: docker.DockerClient, ref: str, progress: Progress = print) -> str:
    """A target's `base` from a registry: use it when present, else pull it (needs a registry)."""
    image = get_image(client, ref)
    if image is not None:
        return image.id
    progress(f"pulling {ref}")
    try:
        return client.images.pull(ref).id
    except docker.errors.APIError as exc:
        raise LabError(f"cannot pull base image {ref}: {exc.explanation or exc}") from None
