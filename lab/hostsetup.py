"""Host packages the lab installs for itself (as root, from Debian's packages), so a fresh
machine needs nothing by hand: mmdebstrap (or debootstrap) for offline base images, chromium for
the HTML-report test, uidmap for the rootless base test, docker-registry for the registry test.
Not root: a one-line error that says what to install."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable

from lab.errors import LabError

# The command each package provides, to tell whether it is there already.
PROVIDES = {"debootstrap": "debootstrap", "chromium": "chromium", "mmdebstrap": "mmdebstrap",
            "uidmap": "newuidmap", "docker-registry": "docker-registry"}
# What `./zmqlab test` needs on the host (the test use case installs them as root).
TEST_PACKAGES = ["debootstrap", "mmdebstrap", "uidmap", "docker-registry", "chromium", "shellcheck"]


def missing(packages: list[str]) -> list[str]:
    extra = ("/usr/sbin", "/sbin")
    def found(cmd: str) -> bool:
        return bool(shutil.which(cmd) or any(os.path.exists(os.path.join(d, cmd)) for d in extra))
    return [p for p in packages if not found(PROVIDES.get(p, p))]


def apt_install(packages: list[str], progress: Callable[[str], None] = print) -> None:
    todo = missing(packages)
    if not todo:
        return
    if os.geteuid() != 0:
        raise LabError("missing host packages: %s (install them: sudo apt-get install %s)" % (
            ", ".join(todo), " ".join(todo)))
    progress("installing host packages: %s" % " ".join(todo))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError("cannot install %s (%s): %s" % (" ".join(todo), " ".join(cmd), last))
