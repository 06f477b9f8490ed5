"""Target images: recipe hashing and skip logic (pure), and real images on the engine (docker).

Docker tests skip with the reason when the engine or an image is missing, except with
ZMQLAB_REQUIRE_DOCKER=1 (CI), where they fail instead. The slow ones build throwaway
images (zmqlab-target:test-*) from the cached pyzmq-25.1.2 wheel and remove them.
"""
from __future__ import annotations

import dataclasses
import shutil
import uuid

import pytest
from conftest import docker_unavailable

from lab import engine, images
from lab.errors import LabError
from lab.targets import KINDS, load_targets

TARGETS = load_targets()
BUILDABLE = [t for t in TARGETS if not t.broken]
# A recipe step that reaches for the network would make the build depend on the internet.
NETWORK_WORDS = ("curl ", "wget ", "pip download", "apt-get install", "apt-get update", "git clone")


def _skip_or_fail(reason: str):
    docker_unavailable(reason)


@pytest.fixture(scope="module")
def client(engine_client):
    return engine_client


def _pin(name: str):
    return next(t for t in TARGETS if t.name == name)


# ---------------------------------------------------------------- pure logic

def test_every_kind_has_a_recipe():
    for kind in KINDS:
        assert (images.RECIPES / kind / "Dockerfile").is_file(), kind


def test_recipes_never_use_the_network():
    for dockerfile in images.RECIPES.glob("*/Dockerfile"):
        text = dockerfile.read_text()
        for word in NETWORK_WORDS:
            assert word not in text, f"{dockerfile} uses {word.strip()!r}"


def test_image_name_has_one_home():
    assert engine.image_name(_pin("pyzmq-25.1.2")) == "zmqlab-target:pyzmq-25.1.2"
    assert engine.image_name("x", engine.BASE_REPO) == "zmqlab-base:x"
    assert not hasattr(images, "image_tag")


def test_recipe_hash_is_stable_and_follows_the_pin():
    target = _pin("pyzmq-25.1.2")
    assert images.recipe_hash(target) == images.recipe_hash(target)
    assert len(images.recipe_hash(target)) == 64
    assert images.recipe_hash(dataclasses.replace(target, libzmq="9.9.9")) != images.recipe_hash(target)
    other_art = dataclasses.replace(target.artifacts[0], sha256="1" * 64)
    assert images.recipe_hash(dataclasses.replace(target, artifacts=(other_art,))) != images.recipe_hash(target)


def test_recipe_hash_follows_the_recipe_files(tmp_path, monkeypatch):
    target = _pin("pyzmq-25.1.2")
    before = images.recipe_hash(target)
    shutil.copytree(images.RECIPES, tmp_path / "docker")
    monkeypatch.setattr(images, "RECIPES", tmp_path / "docker")
    assert images.recipe_hash(target) == before, "the hash must not depend on where the repo is"
    with open(tmp_path / "docker" / "wheel" / "Dockerfile", "a") as fh:
        fh.write("# a changed recipe\n")
    assert images.recipe_hash(target) != before


def test_missing_recipe_is_a_lab_error():
    target = dataclasses.replace(_pin("pyzmq-25.1.2"), kind="no-such-kind")
    with pytest.raises(LabError, match="no recipe folder"):
        images.recipe_hash(target)


def test_expected_verify_line():
    assert images.expected_verify_line(_pin("pyzmq-25.1.2")) == "25.1.2 4.3.4 False"


def test_broken_target_is_reported_without_touching_the_engine():
    target = dataclasses.replace(_pin("pyzmq-25.1.2"), name="x", broken="no sdist for this")
    (result,) = images.build_images(None, [target], progress=lambda s: None)  # no client at all
    assert result == images.BuildResult("x", "broken", 0.0, "no sdist for this")


def test_pins_cover_the_required_libzmq_lines():
    lines = {(t.libzmq, t.draft) for t in TARGETS}
    for need in [("4.1.6", False), ("4.2.5", True), ("4.3.1", False), ("4.3.2", False),
                 ("4.3.3", False), ("4.3.4", False), ("4.3.4", True), ("4.3.5", False)]:
        assert need in lines, need
    assert any(t.kind == "debian-system" for t in TARGETS)


# ---------------------------------------------------------------- real engine

@pytest.mark.docker
@pytest.mark.parametrize("name", [t.name for t in BUILDABLE])
def test_image_honours_the_contract_and_its_pin(client, built_images, name):
    """The image runs as the backend runs it (uid 65534, no network, read-only root,
    tmpfs /tmp) and reports exactly the pinned pyzmq, libzmq and draft support."""
    target = _pin(name)
    assert images.image_ready(client, target)
    assert images.verify_image(client, target) == images.expected_verify_line(target)


@pytest.mark.docker
def test_second_build_is_a_no_op(client, built_images):
    """Up-to-date images are skipped, not rebuilt (how fast that is: `invoke bench`)."""
    ready = [t for t in BUILDABLE if images.image_ready(client, t)]
    if not ready:
        _skip_or_fail("no target image is built")
    results = images.build_images(client, ready, progress=lambda s: None)
    assert [r.status for r in results] == ["skipped"] * len(ready)


@pytest.mark.docker
def test_image_ready_is_false_for_a_changed_pin(client, built_images):
    target = _pin("pyzmq-25.1.2")
    if not images.image_ready(client, target):
        _skip_or_fail("zmqlab-target:pyzmq-25.1.2 is not built")
    assert not images.image_ready(client, dataclasses.replace(target, libzmq="4.3.5"))


@pytest.fixture()
def throwaway(client):
    """A test target built from the pinned 25.1.2 wheel under a unique name; removed after."""
    made: list[str] = []

    def make(pin="pyzmq-25.1.2", **changes):
        name = f"test-{uuid.uuid4().hex[:8]}"
        made.append(engine.TARGET_REPO + ":" + name)
        return dataclasses.replace(_pin(pin), name=name, **changes)

    yield make
    for tag in made:
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass


@pytest.mark.docker
@pytest.mark.slow
def test_build_verify_and_skip_end_to_end(client, throwaway):
    target = throwaway()
    lines: list[str] = []
    (first,) = images.build_images(client, [target], progress=lines.append, nocache=True)
    assert first.status == "built", first.detail
    assert first.detail == "25.1.2 4.3.4 False"
    assert any("Step " in line for line in lines), "progress lines must show the build"
    image = client.images.get(engine.image_name(target))
    assert image.labels[images.HASH_LABEL] == images.recipe_hash(target)
    assert image.labels["org.zmqlab"] == "1"
    (second,) = images.build_images(client, [target], progress=lambda s: None)
    assert second.status == "skipped"


@pytest.mark.docker
@pytest.mark.slow
def test_a_draft_pin_builds_from_scratch_offline(client, throwaway):
    """A compiled draft pin (the bundled pyzmq 25.1.2 sdist, drafts on) built under a fresh
    name, so CI compiles one from nothing on every run, warm cache or not."""
    target = throwaway(pin="pyzmq-25.1.2-draft")
    (result,) = images.build_images(client, [target], progress=lambda s: None, nocache=True)
    assert result.status == "built", result.detail
    assert result.detail == "25.1.2 4.3.4 True"
    out = client.containers.run(engine.image_name(target), ["/opt/venv/bin/python", "-c", CLIENT_SERVER],
                                user="65534", network_mode="none", read_only=True,
                                tmpfs={"/tmp": ""}, remove=True, labels={"org.zmqlab": "1"})
    assert out.decode().strip() == "pong"


@pytest.mark.docker
@pytest.mark.slow
def test_a_changed_pin_rebuilds_and_drops_the_replaced_image(client, throwaway):
    target = throwaway()
    (first,) = images.build_images(client, [target], progress=lambda s: None)
    assert first.status == "built", first.detail
    old_id = client.images.get(engine.image_name(target)).id
    changed = dataclasses.replace(target, python="3.11.2")   # same build, different pin entry
    assert not images.image_ready(client, changed)
    (second,) = images.build_images(client, [changed], progress=lambda s: None)
    assert second.status == "built", second.detail
    assert images.image_ready(client, changed)
    import docker.errors
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(old_id)


@pytest.mark.docker
@pytest.mark.slow
def test_an_image_that_contradicts_its_pin_fails_and_is_removed(client, throwaway):
    target = throwaway(libzmq="4.2.0")  # the wheel really carries 4.3.4
    (result,) = images.build_images(client, [target], progress=lambda s: None)
    assert result.status == "failed"
    assert "25.1.2 4.3.4 False" in result.detail
    assert not images.image_ready(client, target)


@pytest.mark.docker
@pytest.mark.slow
def test_builds_have_no_network(client, throwaway, tmp_path, monkeypatch):
    """A recipe that tries to download fails: builds run with network 'none'."""
    recipes = tmp_path / "docker"
    (recipes / "wheel").mkdir(parents=True)
    (recipes / "wheel" / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nLABEL org.zmqlab=1\n"
        "RUN python3 -c \"import urllib.request; urllib.request.urlopen('http://deb.debian.org', timeout=5)\"\n")
    monkeypatch.setattr(images, "RECIPES", recipes)
    (result,) = images.build_images(client, [throwaway()], progress=lambda s: None)
    assert result.status == "failed"
    assert "build failed" in result.detail and "URLError" in result.detail, result.detail


CLIENT_SERVER = """
import zmq
ctx = zmq.Context()
server = ctx.socket(zmq.SERVER); server.bind('inproc://cs')
client = ctx.socket(zmq.CLIENT); client.connect('inproc://cs')
client.send(b'ping')
frame = server.recv(copy=False)
server.send(b'pong', routing_id=frame.routing_id)
print(client.recv().decode())
"""


@pytest.mark.docker
@pytest.mark.parametrize("name", [t.name for t in BUILDABLE if t.draft])
def test_draft_images_really_have_client_server(client, built_images, name):
    """has('draft') alone could lie: a CLIENT/SERVER round trip in the image must work."""
    target = _pin(name)
    out = client.containers.run(engine.image_name(target), ["/opt/venv/bin/python", "-c", CLIENT_SERVER],
                                user="65534", network_mode="none", read_only=True,
                                tmpfs={"/tmp": ""}, remove=True, labels={"org.zmqlab": "1"})
    assert out.decode().strip() == "pong"


# ---------------------------------------------------------------- bases in labels and provenance

class _Img:
    def __init__(self, labels, tags=("zmqlab-target:pyzmq-25.1.2",), id_="sha256:" + "ee" * 32):
        self.labels, self.tags, self.id = labels, list(tags), id_


def test_an_image_fits_only_its_namespace_and_the_base_source_asked_for(monkeypatch):
    wanted = "f" * 64
    plain = _Img({images.HASH_LABEL: wanted})                       # built before base labels
    pulled = _Img({images.HASH_LABEL: wanted, "org.zmqlab.base.source": "registry"})
    elsewhere = _Img({images.HASH_LABEL: wanted, engine.LABEL_NAMESPACE: "zmqlabtest-1"})
    assert images._fits(plain, wanted, "auto") and images._fits(plain, wanted, "bootstrap")
    assert not images._fits(plain, wanted, "registry"), "asked for a registry base: build on one"
    assert images._fits(pulled, wanted, "registry") and not images._fits(pulled, wanted, "bootstrap")
    assert not images._fits(elsewhere, wanted, "auto"), "a test namespace's image is not the real one"
    assert not images._fits(plain, "0" * 64, "auto")
    monkeypatch.setattr(engine, "_NS", "zmqlabtest-1")
    assert images._fits(elsewhere, wanted, "auto") and not images._fits(plain, wanted, "auto")


def test_bad_image_namespace_is_one_line(monkeypatch):
    monkeypatch.setattr(engine, "_NS", "Not/OK")
    with pytest.raises(LabError, match="ZMQLAB_IMAGE_NAMESPACE='Not/OK' is not allowed"):
        images.build_images(None, [])


def test_provenance_comes_from_the_image_labels():
    labels = {**engine.base_labels("base", "127.0.0.1:5000/zmqlab-base:bookworm", "sha256:" + "12" * 32,
                                   "registry", "pull"),
              **engine.base_labels("builder", "zmqlab-builder:bookworm", "sha256:" + "34" * 32, "bootstrap", "")}
    prov = engine.image_provenance(_Img(labels))
    assert prov == {"ref": "zmqlab-target:pyzmq-25.1.2", "id": "sha256:" + "ee" * 32,
                    "base": {"ref": "127.0.0.1:5000/zmqlab-base:bookworm", "digest": "sha256:" + "12" * 32,
                             "source": "registry", "tool": "pull"},
                    "builder": {"ref": "zmqlab-builder:bookworm", "digest": "sha256:" + "34" * 32,
                                "source": "bootstrap"}}
    assert "base" not in engine.image_provenance(_Img({})), "an image from before base labels: no base"


def test_every_run_report_carries_the_image_provenance_and_still_validates():
    import json
    from factories import make_report
    from lab import schemas
    from lab.backends.base import ProcessResult
    from lab.backends.docker import with_provenance
    prov = engine.image_provenance(_Img(engine.base_labels("base", "zmqlab-base:bookworm", "sha256:" + "56" * 32,
                                                           "bootstrap", "mmdebstrap-unshare")))
    report = make_report("ok")
    result = ProcessResult("a line\n" + json.dumps(report) + "\n", "", 0, False, 1.0)
    out = json.loads(with_provenance(result, prov).stdout.splitlines()[-1])
    assert out["image"]["base"]["digest"] == "sha256:" + "56" * 32
    schemas.validate("run", out)
    schemas.validate("run", report), "reports without it (older files, local runs) still load"
    garbled = ProcessResult("{not json", "", 1, False, 1.0)
    assert with_provenance(garbled, prov) is garbled
