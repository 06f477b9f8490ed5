"""Host packages the lab installs for itself (as root, from Debian's packages), so a fresh
machine needs nothing by hand: mmdebstrap (or debootstrap) for offline base images, chromium for
the HTML-report test, uidmap for the rootless base test, docker-registry for the registry test,
openssh-server for the remote-engine test (tests/test_remote.py starts its own sshd on a loopback
port). Not root: a one-line error that says what to install. Packages are installed without
starting any service they bring (the ssh server's postinst would start sshd on port 22): where
the host has no /usr/sbin/policy-rc.d, one that denies every start is in place during the install."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable

from lab.errors import LabError

# The command each package provides, to tell whether it is there already.
PROVIDES = {"debootstrap": "debootstrap", "chromium": "chromium", "mmdebstrap": "mmdebstrap",
            "uidmap": "newuidmap", "docker-registry": "docker-registry", "openssh-server": "sshd"}
# What `./zmqlab test` needs on the host (the test use case installs them as root).
TEST_PACKAGES = ["debootstrap", "mmdebstrap", "uidmap", "docker-registry", "chromium", "shellcheck",
                 "openssh-server"]
POLICY_RC_D = "/usr/sbin/policy-rc.d"
NO_SERVICES = "#!/bin/sh\n# zmqlab (lab/hostsetup.py): no service starts during its package installs\nexit 101\n"


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
    ours = not os.path.exists(POLICY_RC_D)
    if ours:
        with open(POLICY_RC_D, "w") as f:
            f.write(NO_SERVICES)
        os.chmod(POLICY_RC_D, 0o755)
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise LabError("cannot install %s (%s): %s" % (" ".join(todo), " ".join(cmd), last))
    finally:
        if ours:
            os.unlink(POLICY_RC_D)
