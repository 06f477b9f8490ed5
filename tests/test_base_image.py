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
def test_debootstrap_makes_a_python_rootfs_tarball(tmp_path, monkeypatch):
    """A real debootstrap (about a minute) into a scratch cache; needs root and the mirror."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tarball = base_image.make_tarball("bookworm", "base", progress=lambda s: None)
    assert tarball == base_image.tarball_path("bookworm")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "./usr/bin/python3" in names
    assert any(n.startswith("./usr/lib/python3.11/venv/") for n in names)
    assert not any(n.startswith("./var/lib/apt/lists/") and n.endswith("_Packages") for n in names)
    assert not list((tmp_path / "zmqlab" / "base").glob("rootfs-*")), "the scratch rootfs must be gone"
