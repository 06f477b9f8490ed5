"""Base images: debootstrap command shape (pure), the imported images (docker), a real
debootstrap into a scratch cache (slow, needs root and the Debian mirror)."""
from __future__ import annotations

import os
import tarfile

import pytest
from conftest import docker_unavailable

from lab import base_image
from lab.errors import LabError



def _skip_or_fail(reason: str):
    docker_unavailable(reason)


@pytest.fixture(scope="module")
def client(engine_client):
    return engine_client


def test_debootstrap_command_is_minbase_with_python(tmp_path):
    cmd = base_image.debootstrap_command("bookworm", tmp_path / "r", mirror="http://mirror/debian")
    assert cmd[:2] == ["debootstrap", "--variant=minbase"]
    include = next(a for a in cmd if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert {"python3", "python3-venv", "python3-pip"} <= set(include)
    assert "build-essential" not in include, "compilers belong in the builder only"
    assert cmd[-3:] == ["bookworm", str(tmp_path / "r"), "http://mirror/debian"]


def test_builder_adds_the_build_tools(tmp_path):
    cmd = base_image.debootstrap_command("bullseye", tmp_path, flavour="builder")
    include = next(a for a in cmd if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert {"build-essential", "python3-dev", "autoconf", "automake", "libtool", "pkg-config",
            "cmake", "python3-venv"} <= set(include)


def test_refs_and_tarballs_live_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert base_image.base_ref("bookworm") == "zmqlab-base:bookworm"
    assert base_image.base_ref("bullseye", "builder") == "zmqlab-builder:bullseye"
    assert base_image.tarball_path("bookworm") == tmp_path / "zmqlab" / "base" / "zmqlab-base-bookworm.tar"


def test_unknown_flavour_is_a_lab_error():
    with pytest.raises(LabError, match="unknown base flavour"):
        base_image.ensure_base(None, "bookworm", flavour="fancy")


def test_images_are_told_not_to_write_bytecode():
    # the backend runs with a read-only root: .pyc writes must not even be attempted
    assert "ENV PYTHONDONTWRITEBYTECODE=1" in base_image.IMAGE_CHANGES
    assert "LABEL org.zmqlab=1" in base_image.IMAGE_CHANGES


@pytest.mark.docker
@pytest.mark.parametrize("suite", ["bookworm", "bullseye"])
def test_existing_base_is_reused_and_works(client, built_images, suite):
    """Once made (the session's image builds make both bases), a base is reused, not re-made:
    any progress line would mean debootstrap ran again. (Its speed is `invoke bench`'s job.)"""
    ref = base_image.base_ref(suite)
    if base_image.get_image(client, ref) is None:
        _skip_or_fail(f"{ref} is not made; run `invoke images`")
    image_id = base_image.ensure_base(client, suite, progress=lambda s: pytest.fail(f"rebuilt: {s}"))
    assert image_id == client.images.get(ref).id
    assert client.images.get(ref).labels.get("org.zmqlab") == "1"
    out = client.containers.run(ref, ["python3", "-c", "import venv, ensurepip, sys; print(sys.version_info[:2])"],
                                remove=True, network_mode="none", labels={"org.zmqlab": "1"})
    expected = {"bookworm": "(3, 11)", "bullseye": "(3, 9)"}[suite]
    assert out.decode().strip() == expected


@pytest.mark.docker
def test_builder_has_a_compiler(client, built_images):
    ref = base_image.base_ref("bookworm", "builder")
    if base_image.get_image(client, ref) is None:
        _skip_or_fail(f"{ref} is not made")
    out = client.containers.run(ref, ["sh", "-c", "gcc --version | head -1; cmake --version | head -1; "
                                      "for c in autoreconf libtoolize pkg-config make dpkg-source; do command -v $c; done"],
                                remove=True, network_mode="none", labels={"org.zmqlab": "1"})
    text = out.decode()
    assert "gcc" in text and "cmake version" in text
    for tool in ("autoreconf", "libtoolize", "pkg-config", "make", "dpkg-source"):
        assert f"/{tool}\n" in text, tool


@pytest.mark.slow
def test_bootstrap_makes_a_python_rootfs_tarball(tmp_path, monkeypatch):
    """A real bootstrap as root (mmdebstrap, about a minute) into a scratch cache."""
    if os.geteuid() != 0:
        pytest.skip("this one bootstraps as root (tests/test_rootless.py does it without)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tarball, tool = base_image.make_tarball("bookworm", "base", progress=lambda s: None)
    assert tarball == base_image.tarball_path("bookworm")
    assert tool == "mmdebstrap"
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "./usr/bin/python3" in names
    assert any(n.startswith("./usr/lib/python3.11/venv/") for n in names)
    assert not any(n.startswith("./var/lib/apt/lists/") and n.endswith("_Packages") for n in names)
    assert not list((tmp_path / "zmqlab" / "base").glob("rootfs-*")), "the scratch rootfs must be gone"
    assert not list((tmp_path / "zmqlab" / "base").glob("*.part"))


# ---------------------------------------------------------------- where bases come from (pure)

def test_mmdebstrap_writes_the_tarball_itself_rootless_or_not(tmp_path):
    out = tmp_path / "b.tar.part"
    cmd = base_image.mmdebstrap_command("bookworm", out, mirror="http://mirror/debian", rootless=True)
    assert cmd[:3] == ["mmdebstrap", "--mode=unshare", "--variant=minbase"]
    assert "--format=tar" in cmd and cmd[-3:] == ["bookworm", str(out), "http://mirror/debian"]
    include = next(a for a in cmd if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert include == list(base_image.FLAVOURS["base"][1])
    assert base_image.mmdebstrap_command("bullseye", out)[1] == "--mode=root"


def test_base_source_flag_env_and_default(monkeypatch):
    monkeypatch.delenv(base_image.BASE_SOURCE_ENV, raising=False)
    assert base_image.base_source() == "auto"
    monkeypatch.setenv(base_image.BASE_SOURCE_ENV, "registry")
    assert base_image.base_source() == "registry"
    assert base_image.base_source("bootstrap") == "bootstrap", "the flag wins over the environment"
    with pytest.raises(LabError, match="--base-source 'docker' is not one of auto, registry, bootstrap"):
        base_image.base_source("docker")
    monkeypatch.setenv(base_image.BASE_SOURCE_ENV, "hub")
    with pytest.raises(LabError, match="ZMQLAB_BASE_SOURCE 'hub'"):
        base_image.base_source()


def test_registry_refs_follow_suite_python_and_kind(monkeypatch):
    for env in base_image.REF_ENV.values():
        monkeypatch.delenv(env, raising=False)
    assert base_image.registry_refs("bookworm", "3.11", "wheel", False) == {"base": "python:3.11-slim-bookworm"}
    assert base_image.registry_refs("bullseye", "3.9", "bundled-sdist", True) == {
        "base": "python:3.9-slim-bullseye", "builder": "python:3.9-bullseye"}
    assert base_image.registry_refs("bookworm", "3.11", "debian-system", False) is None, \
        "Debian's python3-zmq needs Debian's python3, which the python images lack"
    monkeypatch.setenv("ZMQLAB_BASE_REF", "127.0.0.1:5000/zmqlab-base:{suite}")
    assert base_image.registry_refs("bookworm", "3.11", "debian-system", False) == {
        "base": "127.0.0.1:5000/zmqlab-base:bookworm"}


class _Image:
    def __init__(self, ref, id_="sha256:" + "ab" * 32, labels=None, digests=()):
        self.tags, self.id, self.labels = [ref], id_, labels or {}
        self.attrs = {"RepoDigests": list(digests)}


class _Client:
    """Just enough engine for resolve(): images by ref."""
    def __init__(self, *images):
        self.images_by_ref = {i.tags[0]: i for i in images}


@pytest.fixture
def fake_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for env in base_image.REF_ENV.values():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(base_image, "get_image", lambda client, ref: client.images_by_ref.get(ref))
    calls = []
    monkeypatch.setattr(base_image, "registry_answers", lambda client, ref: calls.append(ref) or "no such host")
    return calls


def _target(**changes):
    import dataclasses
    from lab.targets import load_targets
    return dataclasses.replace(next(t for t in load_targets() if t.name == "pyzmq-25.1.2"), **changes)


def test_auto_uses_a_base_already_there_without_asking_a_registry(fake_engine):
    client = _Client(_Image("zmqlab-base:bookworm", labels={"org.zmqlab.tool": "mmdebstrap"}))
    bases = base_image.resolve(client, _target(), "auto", compiled=False, progress=lambda s: None)
    assert (bases.source, bases.base, bases.builder) == ("bootstrap", "zmqlab-base:bookworm", "zmqlab-base:bookworm")
    assert bases.labels == {"org.zmqlab.base.ref": "zmqlab-base:bookworm", "org.zmqlab.base.digest": "sha256:" + "ab" * 32,
                            "org.zmqlab.base.source": "bootstrap", "org.zmqlab.base.tool": "mmdebstrap"}
    assert fake_engine == []


def test_auto_prefers_a_pullable_registry_image(fake_engine, monkeypatch):
    pulled = _Image("python:3.11-slim-bookworm", digests=["python@sha256:" + "cd" * 32])
    client = _Client()
    monkeypatch.setattr(base_image, "registry_answers", lambda c, ref: "")

    def pull(c, ref, progress, pull=False):
        c.images_by_ref[ref] = pulled
        return pulled.id
    monkeypatch.setattr(base_image, "ensure_registry_base", pull)
    monkeypatch.setattr(base_image, "ensure_base", lambda *a, **k: pytest.fail("bootstrapped"))
    bases = base_image.resolve(client, _target(), "auto", compiled=False, progress=lambda s: None)
    assert bases.source == "registry" and bases.base == "python:3.11-slim-bookworm"
    assert bases.labels["org.zmqlab.base.digest"] == "sha256:" + "cd" * 32
    assert bases.labels["org.zmqlab.base.tool"] == "pull"


def test_auto_with_no_way_names_all_three_in_one_line(fake_engine, monkeypatch):
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(base_image, "rootless_missing", lambda: ["mmdebstrap", "uidmap"])
    with pytest.raises(LabError) as info:
        base_image.resolve(_Client(), _target(), "auto", compiled=False, progress=lambda s: None)
    text = str(info.value)
    assert "\n" not in text
    assert "(1) registry: python:3.11-slim-bookworm: no such host" in text
    assert "(2) bootstrap as root: not root" in text
    assert "(3) bootstrap without root: bootstrapping a base without root needs mmdebstrap, uidmap" in text
    assert fake_engine == ["python:3.11-slim-bookworm"]


def test_registry_source_refuses_a_kind_the_default_images_cannot_serve(fake_engine):
    with pytest.raises(LabError, match="no registry image serves kind debian-system"):
        base_image.resolve(_Client(), _target(kind="debian-system"), "registry", compiled=False)


def test_rootless_needs_mmdebstrap_uidmap_and_an_id_range(monkeypatch):
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(base_image.shutil, "which", lambda cmd: None)
    monkeypatch.setattr(base_image, "_has_id_range", lambda path: False)
    with pytest.raises(LabError) as info:
        base_image.bootstrap_tool(progress=lambda s: None)
    text = str(info.value)
    assert "needs mmdebstrap, uidmap, a /etc/subuid range for" in text and "/etc/subgid" in text
    assert "sudo apt-get install mmdebstrap uidmap" in text


def test_repo_digest_is_the_one_of_the_pulled_repository():
    image = _Image("127.0.0.1:5000/zmqlab-base:bookworm",
                   digests=["other/x@sha256:" + "11" * 32, "127.0.0.1:5000/zmqlab-base@sha256:" + "22" * 32])
    assert base_image._repo_digest(image, "127.0.0.1:5000/zmqlab-base:bookworm") == "sha256:" + "22" * 32
    hub = _Image("python:3.11-slim-bookworm", digests=["python@sha256:" + "33" * 32])
    assert base_image._repo_digest(hub, "python:3.11-slim-bookworm") == "sha256:" + "33" * 32
    assert base_image._repo_digest(_Image("zmqlab-base:bookworm"), "zmqlab-base:bookworm") == ""


def test_the_import_sends_the_tarballs_bytes_never_its_path(tmp_path):
    """A remote engine has none of this host's paths: the tarball goes in the request body."""
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(b"tar bytes")
    sent = {}

    class Api:
        def import_image_from_data(self, data, repository, tag, changes):
            sent.update(data=data.read(), repository=repository, tag=tag, changes=changes)

        def import_image(self, **kw):                   # the path-taking call must not be used
            raise AssertionError(kw)

    class Client:
        api = Api()
        images = type("Images", (), {"get": lambda self, ref: _Image(ref, id_="sha256:x")})()
    assert base_image._import(Client(), tarball, "bookworm", "base", "mmdebstrap") == "sha256:x"
    assert sent["data"] == b"tar bytes" and str(tmp_path) not in repr(sent)
    assert sent["repository"] == base_image.BASE_REPO and sent["tag"] == "bookworm"
