"""Shared fixtures. Docker-backed fixtures skip with the reason when no engine answers,
except with ZMQLAB_REQUIRE_DOCKER=1 (CI), where they fail: CI must run them for real."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from lab.errors import LabError

REQUIRE_DOCKER = os.environ.get("ZMQLAB_REQUIRE_DOCKER") == "1"


def docker_unavailable(reason: str) -> None:
    if REQUIRE_DOCKER:
        pytest.fail(f"ZMQLAB_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine_client():
    from lab import engine
    try:
        client = engine.connect()
    except LabError as exc:
        docker_unavailable(str(exc))
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(engine_client):
    """Every buildable pin's image, built offline once per session (a no-op when they are
    up to date, the whole cold build on a fresh machine). A failed build fails the tests."""
    from lab import images
    from lab.targets import load_targets
    targets = [t for t in load_targets() if not t.broken]
    results = images.build_images(engine_client, targets, progress=lambda line: print(line, flush=True))
    failed = [f"{r.target}: {r.detail}" for r in results if r.status == "failed"]
    if failed:
        pytest.fail("image builds failed: " + "; ".join(failed))
    return {t.name: t for t in targets}


# ---- rootless and registry tests (tests/test_rootless.py, tests/test_registry.py) ----------------

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def namespace_images(client, namespace: str) -> list:
    """Images tagged in the test namespace `namespace` (<ns>-zmqlab-*), targets first."""
    mine = [i for i in client.images.list() if any(t.startswith(namespace + "-zmqlab-") for t in i.tags)]
    return sorted(mine, key=lambda i: 0 if any("-zmqlab-target:" in t for t in i.tags) else 1)


def remove_namespace(client, namespace: str) -> None:
    """Remove what a test built in its own image namespace (never anything else)."""
    import docker.errors
    for image in namespace_images(client, namespace):
        for tag in image.tags:
            if tag.startswith(namespace + "-zmqlab-"):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError as exc:
                    print(f"could not remove {tag}: {exc}", flush=True)


@pytest.fixture
def image_namespace(engine_client):
    """A fresh ZMQLAB_IMAGE_NAMESPACE (<ns>-zmqlab-target:..., never the real images); what was
    built in it is removed afterwards."""
    import uuid
    namespace = "zmqlabtest-" + uuid.uuid4().hex[:8]
    yield namespace
    remove_namespace(engine_client, namespace)


@pytest.fixture(scope="module")
def docker_user(engine_client):
    """An unprivileged user in the docker group, with its own home (and /etc/subuid range, which
    useradd gives it); removed afterwards with its home. Root only (CI runs as root)."""
    import grp
    import subprocess
    import uuid
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    try:
        grp.getgrnam("docker")
    except KeyError:
        docker_unavailable("no docker group on this host")
    name = "zmqlabt" + uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--create-home", "--groups", "docker", "--shell", "/bin/bash", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def repo_copy(dest) -> None:
    """The working tree as a fresh clone would hold it plus local edits (tracked and untracked,
    not ignored); no .venv: ./zmqlab makes its own on first use, as after a clone."""
    import shutil
    import subprocess
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@contextlib.contextmanager
def docker_run(engine_client, prefix: str):
    """A Docker backend for one test run; on the way out it must leave no container behind."""
    from lab import engine
    from lab.backends.docker import DockerBackend
    run_id = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
    backend = DockerBackend(run_id, client=engine_client)
    try:
        yield backend
    finally:
        backend.close()
    left = engine_client.containers.list(all=True, filters={"label": "%s=%s" % (engine.LABEL_RUN, run_id)})
    assert left == []


# ---- the local backend on the pinned wheel (tests/test_harness.py, tests/test_roles.py) ------------

LOCAL_TARGET = "pyzmq-25.1.2"


@pytest.fixture(scope="module")
def local():
    """A LocalBackend with the pyzmq-25.1.2 wheel's venv ready: (backend, target)."""
    from lab.backends.local import LocalBackend
    from lab.targets import load_targets, select
    backend = LocalBackend(progress=lambda s: None)
    target = select(load_targets(), LOCAL_TARGET)[0]
    assert backend.prepare(target) is None
    yield backend, target
    backend.close()
