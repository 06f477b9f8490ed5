"""The registry path, for real: Debian's docker-registry (the distribution registry) on a
loopback port with its own storage, the lab's own bootstrapped base pushed to it, and
pyzmq-25.1.2 built with --base-source registry pulling from it (the engine allows 127.0.0.0/8
registries without TLS). Its verdicts must match the bootstrapped image's in class, and every
run must name the pulled base's digest. Everything it builds goes to a throwaway image
namespace; the fixture stops the registry (by its pid) and removes its storage."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, docker_unavailable

from lab import base_image, engine, hostsetup

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TARGET = "pyzmq-25.1.2"
# outcomes that do not depend on a race: PUSH/PULL delivers, CLIENT/SERVER needs drafts
# this build lacks, PAIR with many senders deadlocks
CELLS = ("--patterns", "pushpull,clientserver,pair", "--transports", "inproc", "--poll", "off",
         "--sync", "none", "--repeat", "1", "--threads", "10", "--msgs", "100")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path_factory):
    """A distribution registry on 127.0.0.1:<free port>, its own config and storage; yields
    'host:port'; stopped by its pid and its storage removed afterwards."""
    if not shutil.which("docker-registry"):
        if os.geteuid() != 0:
            docker_unavailable("docker-registry is not installed (apt-get install docker-registry)")
        hostsetup.apt_install(["docker-registry"])
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root / 'storage'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    log = open(root / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("docker-registry exited: " + (root / "registry.log").read_text()[-500:])
                time.sleep(0.1)
        else:
            pytest.fail("docker-registry did not answer on " + address)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _lab(*argv: str, namespace: str = "", cache: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, XDG_CACHE_HOME=str(cache), **env)
    full.pop(engine.NAMESPACE_ENV, None)
    if namespace:
        full[engine.NAMESPACE_ENV] = namespace
    proc = subprocess.run(["./zmqlab", *argv], cwd=REPO, env=full, capture_output=True, text=True, timeout=1800)
    print(f"$ {engine.NAMESPACE_ENV}={namespace} ./zmqlab {' '.join(argv)}  -> exit {proc.returncode}")
    print(proc.stdout[-3000:])
    print(proc.stderr[-3000:])
    return proc


def _verdicts(out: Path) -> dict[str, dict]:
    run_dir = next(d for d in out.iterdir() if d.is_dir())
    return {v["key"]: v for v in (json.loads(p.read_text()) for p in run_dir.glob("cells/*.json"))}


def test_a_pin_built_on_a_pulled_base_judges_like_the_bootstrapped_one(
        engine_client, registry, image_namespace, tmp_path):
    client = engine_client
    cache = tmp_path / "cache"
    # The lab's own bootstrapped base: the real one when this engine has it, else one
    # bootstrapped here in the test namespace (with the pin built on it, to compare against).
    boot_ns = ""
    real_base = base_image.get_image(client, "zmqlab-base:bookworm")
    real_target = base_image.get_image(client, f"zmqlab-target:{TARGET}")
    if real_base is None or real_target is None or \
            real_target.labels.get("org.zmqlab.base.source", "bootstrap") != "bootstrap":
        boot_ns = image_namespace + "-boot"
        made = _lab("images", "--targets", TARGET, "--base-source", "bootstrap", namespace=boot_ns, cache=cache)
        assert made.returncode == 0
    base_local = f"{boot_ns + '-' if boot_ns else ''}zmqlab-base:bookworm"
    pushed = f"{registry}/zmqlab-base:bookworm"
    try:
        base = client.images.get(base_local)
        assert base.tag(f"{registry}/zmqlab-base", "bookworm")
        for line in client.images.push(f"{registry}/zmqlab-base", "bookworm", stream=True, decode=True):
            assert "error" not in line, line
        client.images.remove(pushed)          # only the tag: the pull below must fetch it
        assert base_image.get_image(client, pushed) is None

        built = _lab("images", "--targets", TARGET, "--base-source", "registry", namespace=image_namespace,
                     cache=cache, ZMQLAB_BASE_REF=f"{registry}/zmqlab-base:{{suite}}")
        assert built.returncode == 0
        assert f"pulling {pushed}" in built.stderr
        assert "built" in built.stdout
        pulled = client.images.get(pushed)
        digest = next(d.split("@", 1)[1] for d in pulled.attrs["RepoDigests"] if d.startswith(registry))
        labels = client.images.get(f"{image_namespace}-zmqlab-target:{TARGET}").labels
        assert labels["org.zmqlab.base.ref"] == pushed
        assert labels["org.zmqlab.base.source"] == "registry"
        assert labels["org.zmqlab.base.digest"] == digest
        print(f"built on {pushed}, digest {digest}")

        runs = {}
        for name, ns in (("registry", image_namespace), ("bootstrap", boot_ns)):
            out = tmp_path / f"results-{name}"
            proc = _lab("matrix", "--targets", TARGET, *CELLS, "--backend", "docker", "--out", str(out),
                        namespace=ns, cache=cache)
            assert proc.returncode == 0
            runs[name] = _verdicts(out)
        assert set(runs["registry"]) == set(runs["bootstrap"]) and len(runs["registry"]) == 3
        for key, verdict in sorted(runs["registry"].items()):
            print(f"{key}: registry {verdict['outcome']}, bootstrap {runs['bootstrap'][key]['outcome']}")
            assert verdict["outcome"] == runs["bootstrap"][key]["outcome"], key
            for run in verdict["runs"]:
                if run.get("classified_by") != "lab":
                    assert run["image"]["base"] == {"ref": pushed, "digest": digest, "source": "registry",
                                                    "tool": "pull"}
        print("verdict provenance:", json.dumps(next(iter(runs["registry"].values()))["runs"][0]["image"]))
    finally:
        if base_image.get_image(client, pushed) is not None:
            client.images.remove(pushed)      # a tag of the lab's base: untagged, never deleted
        if boot_ns:
            from conftest import remove_namespace
            remove_namespace(client, boot_ns)
