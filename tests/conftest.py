"""Shared fixtures. Docker-backed fixtures skip with the reason when no engine answers,
except with ZMQLAB_REQUIRE_DOCKER=1 (CI), where they fail: CI must run them for real."""
from __future__ import annotations

import os

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
