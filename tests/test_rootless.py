"""The quick start as most people run it: not root, in the docker group, a fresh copy of the
repo (./zmqlab makes its .venv) and an empty cache. The base is bootstrapped without root
(mmdebstrap --mode=unshare), the pin is built on it and a small matrix runs, all as that user.
Images go to a throwaway namespace (<ns>-zmqlab-*), removed afterwards with the user."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, repo_copy

from lab import app, base_image, engine, hostsetup
from lab.errors import LabError

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


def _as_user(user: str, cwd: Path, *argv: str, path: str = CLEAN_PATH, timeout: float = 1800,
             **env: str) -> subprocess.CompletedProcess:
    home = os.path.expanduser(f"~{user}")
    clean = {"HOME": home, "USER": user, "LOGNAME": user, "PATH": path, "LANG": "C.UTF-8",
             "XDG_CACHE_HOME": os.path.join(home, ".cache"), "ZMQLAB_PYTHON": "/usr/bin/python3", **env}
    cmd = ["runuser", "-u", user, "--", "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in clean.items()], *argv]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(docker_user) -> Path:
    """The user's fresh copy of the repo, its .venv made by ./zmqlab itself (pip, once)."""
    home = Path(os.path.expanduser(f"~{docker_user}"))
    where = home / "zmqlab"
    where.mkdir()
    repo_copy(where)
    subprocess.run(["chown", "-R", "--no-dereference", f"{docker_user}:", str(where)], check=True)
    proc = _as_user(docker_user, where, "./zmqlab", "targets")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return where


def test_test_use_case_stops_before_pytest_when_packages_are_missing(monkeypatch):
    """In process: not root, packages missing: one LabError line, pytest never started."""
    monkeypatch.setattr(hostsetup.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(hostsetup, "missing", lambda packages: [p for p in packages if p != "debootstrap"])
    monkeypatch.setattr(app.subprocess, "call", lambda *a, **k: pytest.fail("pytest ran"))
    with pytest.raises(LabError) as info:
        app.test(True, True, "")
    text = str(info.value)
    assert "\n" not in text and text.startswith("missing host packages: mmdebstrap, uidmap, docker-registry")
    assert "sudo apt-get install mmdebstrap uidmap docker-registry chromium shellcheck" in text


@pytest.mark.docker
@pytest.mark.slow
def test_test_task_as_a_user_without_host_packages_says_which_in_one_line(docker_user, clone):
    """`./zmqlab test` as a user who cannot install them: one line naming the missing host
    packages, exit 2, not a single test run. The PATH holds only what the launcher needs."""
    where = Path(tempfile.mkdtemp(prefix="zmqlab-fakepath-"))      # in /tmp: the user can read it
    try:
        where.chmod(0o755)
        for tool in ("bash", "cat", "cmp", "dirname", "env"):
            (where / tool).symlink_to(shutil.which(tool, path=CLEAN_PATH))
        proc = _as_user(docker_user, clone, "./zmqlab", "test", path=str(where), timeout=300)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("zmqlab: error: missing host packages: ")
    for package in ("mmdebstrap", "uidmap", "docker-registry", "chromium"):
        assert package in lines[0]
    assert "apt-get install" in lines[0]
    assert proc.stdout == "" and "test session starts" not in proc.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_unprivileged_user_bootstraps_builds_and_runs_a_matrix(engine_client, docker_user, clone,
                                                             image_namespace):
    hostsetup.apt_install(["mmdebstrap", "uidmap"])        # the test task installs them as root too
    real = base_image.get_image(engine_client, "zmqlab-base:bookworm")
    # auto walks registry -> root -> rootless; where a public registry answers, ask for bootstrap
    source = "bootstrap" if not base_image.registry_answers(engine_client, "python:3.11-slim-bookworm") else "auto"
    cache = Path(os.path.expanduser(f"~{docker_user}")) / ".cache" / "zmqlab"
    assert not cache.exists(), "the cache must start empty"

    t0 = time.monotonic()
    proc = _as_user(docker_user, clone,
                    "./zmqlab", "matrix", "--targets", "pyzmq-25.1.2", "--patterns", "pushpull,pubsub",
                    "--transports", "inproc", "--poll", "off", "--sync", "none", "--repeat", "1",
                    "--backend", "docker", ZMQLAB_BASE_SOURCE=source,
                    **{engine.NAMESPACE_ENV: image_namespace})
    wall = time.monotonic() - t0
    print(f"--- ./zmqlab matrix as {docker_user} (base source {source}): {wall:.1f} s, exit {proc.returncode}")
    print(proc.stdout)
    print(proc.stderr[-5000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--mode=unshare" in proc.stderr, "the base must be bootstrapped without root"
    assert "pushpull" in proc.stdout and "pubsub" in proc.stdout

    labels = engine_client.images.get(f"{image_namespace}-zmqlab-target:pyzmq-25.1.2").labels
    base = engine_client.images.get(f"{image_namespace}-zmqlab-base:bookworm")
    assert labels["org.zmqlab.namespace"] == image_namespace
    assert labels["org.zmqlab.base.ref"] == f"{image_namespace}-zmqlab-base:bookworm"
    assert labels["org.zmqlab.base.source"] == "bootstrap"
    assert labels["org.zmqlab.base.tool"] == "mmdebstrap-unshare"
    assert labels["org.zmqlab.base.digest"] == base.id
    run_dir = next(d for d in (clone / "results").iterdir() if d.is_dir())
    cells = list(run_dir.glob("cells/*.json"))
    assert len(cells) == 2
    for path in cells:                  # every verdict says what it ran on
        for run in json.loads(path.read_text())["runs"]:
            assert run["image"]["base"]["digest"] == base.id
            assert run["image"]["base"]["tool"] == "mmdebstrap-unshare"
    if real is not None:                # the real images are not touched
        assert engine_client.images.get("zmqlab-base:bookworm").id == real.id
