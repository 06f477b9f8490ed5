"""Artifact cache: hash checks, fetching over real HTTP (a local server), one-line errors."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from lab import artifacts
from lab.backends.local import lab_id
from lab.errors import LabError
from lab.targets import Artifact, load_targets

PAYLOAD = b"pretend this is a wheel\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "zmqlab" / "artifacts"


@pytest.fixture()
def server():
    """A real HTTP server on localhost serving PAYLOAD at /good.whl; counts GETs."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            if self.path.startswith("/good"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_cache_root_follows_xdg(cache):
    assert artifacts.artifact_dir() == cache


def test_cache_root_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert artifacts.cache_root() == tmp_path / ".cache" / "zmqlab"


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert artifacts.sha256_file(path) == PAYLOAD_SHA


def test_fetch_downloads_checks_and_then_uses_the_cache(cache, server):
    base, hits = server
    art = Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, f"{base}/good.whl")
    path = artifacts.fetch(art, progress=lambda s: None)
    assert path == cache / art.file and path.read_bytes() == PAYLOAD
    artifacts.fetch(art, progress=lambda s: None)
    assert hits == ["/good.whl"], "a cached, matching file must not be fetched again"


def test_fetch_refetches_a_corrupt_cached_file(cache, server):
    base, hits = server
    art = Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, f"{base}/good.whl")
    cache.mkdir(parents=True)
    (cache / art.file).write_bytes(b"truncated")
    assert artifacts.fetch(art, progress=lambda s: None).read_bytes() == PAYLOAD
    assert len(hits) == 1


def test_hash_mismatch_is_one_line_and_leaves_nothing(cache, server):
    base, _ = server
    art = Artifact("good-1.0-py3-none-any.whl", "0" * 64, f"{base}/good.whl")
    with pytest.raises(LabError) as err:
        artifacts.fetch(art, progress=lambda s: None)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and art.file in msg and "\n" not in msg
    assert not any(cache.iterdir()), "a file that failed its hash must not stay in the cache"


def test_http_error_is_one_line(cache, server):
    base, _ = server
    art = Artifact("missing.tar.gz", PAYLOAD_SHA, f"{base}/missing.tar.gz")
    with pytest.raises(LabError) as err:
        artifacts.fetch(art, progress=lambda s: None)
    assert "cannot fetch" in str(err.value) and "\n" not in str(err.value)
    assert not (cache / "missing.tar.gz").exists()


def test_unreachable_host_is_one_line(cache):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    art = Artifact("x.tar.gz", PAYLOAD_SHA, f"http://127.0.0.1:{port}/x.tar.gz")
    with pytest.raises(LabError) as err:
        artifacts.fetch(art, progress=lambda s: None)
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)


def test_sdist_without_url_is_a_pin_error(cache):
    with pytest.raises(LabError, match="no url pinned"):
        artifacts.fetch(Artifact("pyzmq-25.1.2.tar.gz", PAYLOAD_SHA), progress=lambda s: None)


def test_wheel_tags_of_a_multi_platform_wheel():
    name, version, pys, abi, plats = artifacts.wheel_tags(
        "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl")
    assert (name, version, pys, abi) == ("pyzmq", "27.3.0", ["cp311"], "cp311")
    assert plats == ["manylinux_2_26_x86_64", "manylinux_2_28_x86_64"]


def test_pip_download_asks_for_the_wheels_own_interpreter(tmp_path):
    cmd = artifacts.pip_download_command("pyzmq-19.0.2-cp39-cp39-manylinux1_x86_64.whl", tmp_path)
    joined = " ".join(cmd)
    assert "pyzmq==19.0.2" in cmd and "--no-deps" in cmd
    assert "--python-version 39" in joined and "--abi cp39" in joined
    assert "--platform manylinux1_x86_64" in joined


def test_pip_download_of_a_pure_wheel_has_no_platform(tmp_path):
    cmd = artifacts.pip_download_command("wheel-0.42.0-py3-none-any.whl", tmp_path)
    assert "--platform" not in cmd and "--python-version" not in cmd


def test_not_a_wheel_name_is_rejected():
    with pytest.raises(LabError):
        artifacts.wheel_tags("pyzmq-25.1.2.tar.gz")


def test_every_pinned_artifact_is_fetchable_in_principle():
    """A url, or a wheel pip can find by its tags: nothing that would need guessing."""
    for target in load_targets():
        for art in target.artifacts:
            assert art.url or art.file.endswith(".whl"), f"{target.name}: {art.file} lacks a url"
            if art.url:
                assert art.url.rsplit("/", 1)[-1].replace("%2b", "+").replace("%7e", "~") == art.file


def test_link_into_puts_files_in_a_context(tmp_path):
    src = tmp_path / "a.whl"
    src.write_bytes(PAYLOAD)
    artifacts.link_into([src], tmp_path / "ctx" / "artifacts")
    assert (tmp_path / "ctx" / "artifacts" / "a.whl").read_bytes() == PAYLOAD


# ---- a bad pin cannot damage the cache ----------------------------------------------------

def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its sha256: what must not change."""
    return {str(p.relative_to(folder)): artifacts.sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_wrong_pin_leaves_the_good_cached_file_and_names_both_hashes(cache, server):
    base, _ = server
    good = Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, f"{base}/good.whl")
    artifacts.fetch(good, progress=lambda s: None)
    (cache.parent / "venvs" / "t").mkdir(parents=True)
    (cache.parent / "venvs" / "t" / "marker").write_text("x")
    before = snapshot(cache.parent)
    wrong = Artifact(good.file, "1" * 64, good.url)
    with pytest.raises(LabError) as err:
        artifacts.fetch(wrong, progress=lambda s: None)
    msg = str(err.value)
    assert "1" * 64 in msg and PAYLOAD_SHA in msg and "pin looks wrong" in msg and "\n" not in msg
    assert snapshot(cache.parent) == before


def test_a_corrupt_download_over_a_corrupt_cached_file_changes_nothing(cache, server):
    base, _ = server
    cache.mkdir(parents=True)
    (cache / "good-1.0-py3-none-any.whl").write_bytes(b"old bytes")
    before = snapshot(cache)
    with pytest.raises(LabError, match="sha256 mismatch"):
        artifacts.fetch(Artifact("good-1.0-py3-none-any.whl", "2" * 64, f"{base}/good.whl"),
                        progress=lambda s: None)
    assert snapshot(cache) == before


@pytest.mark.parametrize("file", ["..", "../outside.whl", "sub/x.whl", ".hidden"])
def test_an_artifact_named_as_a_path_is_refused_before_any_io(cache, tmp_path, file):
    with pytest.raises(LabError, match="not allowed"):
        artifacts.fetch(Artifact(file, PAYLOAD_SHA, "file:///etc/hostname"), progress=lambda s: None)
    assert not cache.exists() and not (tmp_path / "xdg" / "zmqlab" / "outside.whl").exists()


def test_downloads_go_to_a_temporary_file_then_are_renamed(cache, monkeypatch):
    art = Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, "file:///unused")
    seen = []

    def fake_download(a, dest):
        seen.append(dest)
        assert dest.parent == cache and dest.name != a.file
        assert dest.name.startswith(".%s.%s-" % (a.file, lab_id())), "named after the lab, for the reaper"
        assert not (cache / a.file).exists(), "the final name appears only once verified"
        dest.write_bytes(PAYLOAD)

    monkeypatch.setattr(artifacts, "_download_url", fake_download)
    path = artifacts.fetch(art, progress=lambda s: None)
    assert path.read_bytes() == PAYLOAD and seen and not seen[0].exists()
    assert sorted(p.name for p in cache.iterdir()) == [art.file]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_file_urls_work_and_a_mismatch_leaves_no_temporary_file(cache, tmp_path):
    src = tmp_path / "src.whl"
    src.write_bytes(PAYLOAD)
    ok = Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, src.as_uri())
    assert artifacts.fetch(ok, progress=lambda s: None).read_bytes() == PAYLOAD
    with pytest.raises(LabError):
        artifacts.fetch(Artifact("other-1.0-py3-none-any.whl", "3" * 64, src.as_uri()), progress=lambda s: None)
    assert sorted(p.name for p in cache.iterdir()) == [ok.file]


@pytest.mark.parametrize("root", ["/proc/zmqlab-no-cache", __file__ + "/sub"])  # not a folder, even for root
def test_an_unwritable_cache_is_one_line(monkeypatch, root):
    monkeypatch.setenv("XDG_CACHE_HOME", root)
    with pytest.raises(LabError) as err:
        artifacts.fetch(Artifact("good-1.0-py3-none-any.whl", PAYLOAD_SHA, "file:///nonexistent"),
                        progress=lambda s: None)
    assert "cannot use the cache directory" in str(err.value) and "\n" not in str(err.value)
