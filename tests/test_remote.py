"""Remote engines for real (issue 11): the lab against `ssh://root@127.0.0.1:PORT`, an sshd of
this test's own (openssh-server from Debian, which `./zmqlab test` installs: lab/hostsetup.py)
on a loopback port, with its own sshd_config, host key and client key in a temporary folder.

The Docker SDK reaches the engine through paramiko, which reads ~/.ssh/config and
~/.ssh/known_hosts under $HOME: the lab's processes here get HOME=<the test's folder>, so the
machine's own ~/.ssh is never read or written. On the far side sshd runs `docker system
dial-stdio` as root, i.e. this machine's engine once more, reached over ssh: nothing of this
host's file system may be in its view (no bind mount), and the scenarios and the base tarball
travel through the API.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from lab import engine

REPO = Path(__file__).resolve().parents[1]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PIN, OTHER = "pyzmq-25.1.2", "pyzmq-27.3.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(engine_client, built_images, tmp_path_factory):
    """An sshd on 127.0.0.1:PORT for this module only, and a HOME whose ~/.ssh knows it; yields
    (url, env for the lab's processes). Stopped afterwards by its pid (nothing else)."""
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        pytest.fail("openssh-server is not installed: `./zmqlab test` installs it (lab/hostsetup.py)")
    if os.geteuid() != 0:
        pytest.skip("the engine is reached as root over ssh: the test's sshd needs root")
    d = tmp_path_factory.mktemp("sshd")
    d.chmod(0o700)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"zmqlab-test-{key}",
                        "-f", str(d / key)], check=True, capture_output=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers root
MaxSessions 64
MaxStartups 64
LogLevel ERROR
""")
    made_run_dir = not os.path.isdir("/run/sshd")        # sshd's privilege separation directory
    if made_run_dir:
        os.makedirs("/run/sshd", mode=0o755)
    home = d / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  User root\n  IdentityFile {d / 'client_key'}\n")
    host_pub = " ".join((d / "host_key.pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
                time.sleep(0.1)
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=cache, DOCKER_HOST=f"ssh://root@127.0.0.1:{port}")
        yield env["DOCKER_HOST"], env
    finally:
        proc.terminate()                                # only the sshd this fixture started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if made_run_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)


@pytest.fixture
def over_ssh(sshd, monkeypatch):
    """This process's own engine calls over the test's ssh (DOCKER_HOST, HOME for paramiko)."""
    url, env = sshd
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.setenv("HOME", env["HOME"])
    return url


def _zmqlab(env: dict, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["./zmqlab", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


class Watch:
    """Records the Mounts of every container of the runs under `out` (run id = the run
    directory's name) while they live: the lab removes them at the end of the run."""

    def __init__(self, client, out: Path):
        self.client, self.out = client, out
        self.mounts: dict[str, list] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for run in (p.name for p in self.out.glob("*") if p.is_dir()):
                try:
                    found = self.client.containers.list(
                        all=True, ignore_removed=True, filters={"label": f"{engine.LABEL_RUN}={run}"})
                except Exception:
                    continue
                for c in found:
                    self.mounts.setdefault(c.name, c.attrs.get("Mounts") or [])
            self._stop.wait(0.1)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _verdicts(run_dir: Path) -> dict[str, dict]:
    return {v["key"]: v for v in (json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json")))}


@pytest.mark.docker
@pytest.mark.slow
def test_a_matrix_through_an_ssh_engine_has_no_host_path_in_view(sshd, engine_client, tmp_path):
    url, env = sshd
    built = _zmqlab(env, "images", "--targets", PIN)        # up to date: checked through ssh
    assert built.returncode == 0, built.stderr[-2000:]
    out = tmp_path / "results"
    with Watch(engine_client, out) as watch:
        proc = _zmqlab(env, "matrix", "--targets", PIN, "--patterns", "pushpull,pubsub",
                       "--transports", "tcp", "--repeat", "2", "--out", str(out))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert f"at {url}" in proc.stderr, proc.stderr          # "Backend: Docker engine ... at ssh://..."
    assert "pushpull" in proc.stdout and "pubsub" in proc.stdout and PIN in proc.stdout
    # every container of the run, seen while it lived: no bind mount, the scenarios in a volume
    assert watch.mounts, "no container of the run was seen"
    for name, mounts in watch.mounts.items():
        assert [m for m in mounts if m.get("Type") == "bind"] == [], (name, mounts)
        assert [m["Destination"] for m in mounts] == ["/opt/zmqlab/scenarios"], (name, mounts)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    verdicts = _verdicts(run_dir)
    assert verdicts and all(v["n"] == 2 for v in verdicts.values())
    prov = verdicts[f"{PIN}/pushpull/tcp/default"]["runs"][0]["provenance"]
    image = engine_client.images.get(engine.image_name(PIN))
    assert prov["image"] == image.id and prov["recipe"] == image.labels[engine.RECIPE_LABEL]
    assert prov["engine"]["remote"] is True and prov["engine"]["address"] == url
    assert prov["engine"]["id"] == engine_client.info()["ID"]
    from lab.backends.docker import SCENARIOS_DIR, scenarios_archive
    assert prov["scenarios"] == scenarios_archive(SCENARIOS_DIR)[1]


@pytest.mark.docker
@pytest.mark.slow
def test_a_base_tarball_is_streamed_to_the_engine(over_ssh, tmp_path):
    """docker import through ssh: the engine gets the bytes, never the host's path."""
    from lab import base_image
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "zmqlab-test").write_text("streamed\n")
    tarball = tmp_path / "not-on-the-engine.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root / "etc", arcname="etc")
    suite = "zmqlabtest-" + uuid.uuid4().hex[:8]
    client = engine.connect()
    try:
        image_id = base_image._import(client, tarball, suite, "base", "test")
        try:
            image = client.images.get(image_id)
            assert image.labels[f"{engine.LABEL}.suite"] == suite
            assert base_image.base_ref(suite) in image.tags
        finally:
            client.images.remove(image_id, force=True)
    finally:
        client.close()


@pytest.mark.docker
def test_a_refused_key_and_a_closed_port_are_one_line_each(sshd, tmp_path):
    url, env = sshd
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(Path(env["HOME"]) / ".ssh" / "known_hosts", home / ".ssh" / "known_hosts")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "stranger")], check=True)
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {home / 'stranger'}\n")
    for engine_url, fragment in ((url, f"Docker engine at {url}: ssh authentication refused"),
                                 (f"ssh://root@127.0.0.1:{_free_port()}", "no Docker engine answers at ssh://root@")):
        proc = _zmqlab(dict(env, HOME=str(home)), "matrix", "--engine", engine_url, "--targets", PIN,
                       "--patterns", "pushpull", "--transports", "tcp", "--out", str(tmp_path / "r"), timeout=120)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and lines and fragment in lines[-1], proc.stderr[-1500:]
        assert "Traceback" not in proc.stderr and len([ln for ln in lines if "error" in ln]) == 1
        assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.docker
@pytest.mark.slow
def test_a_sweep_split_over_two_engines_merges_to_the_single_engine_run(sshd, tmp_path):
    """The README's recipe: one `sweep-run --target X` per engine (the local socket, and the same
    engine through ssh), then `sweep-merge`; the merged cells and outcomes equal one run of the
    same cells on one engine. pushpull over tcp: deterministic (ok in every run, baseline)."""
    url, env = sshd
    local = dict(env, DOCKER_HOST=engine.DEFAULT_SOCKET)
    size = ["--patterns", "pushpull", "--transports", "tcp", "--threads", "2", "--msgs", "20", "--repeat", "2"]
    parts = []
    for target, where in ((PIN, local), (OTHER, env)):
        part = tmp_path / f"part-{target}"
        proc = _zmqlab(where, "sweep-run", "--target", target, "--out", str(part), *size)
        assert proc.returncode == 0, (target, proc.stderr[-2000:])
        parts.append(part)
    merged = _zmqlab(local, "sweep-merge", "--dirs", ",".join(map(str, parts)), "--out", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr[-2000:]
    single = _zmqlab(local, "matrix", "--targets", f"{PIN},{OTHER}", "--variants", "primary", "--poll", "both",
                     "--sync", "none", "--sleep", "0", "--out", str(tmp_path / "single"), *size)
    assert single.returncode == 0, single.stderr[-2000:]
    (m,) = (tmp_path / "merged").iterdir()
    (s,) = (tmp_path / "single").iterdir()
    got = {k: (v["outcome"], v["n"], v["counts"]) for k, v in _verdicts(m).items()}
    want = {k: (v["outcome"], v["n"], v["counts"]) for k, v in _verdicts(s).items()}
    assert got == want and len(got) == 4, (got, want)
    assert {outcome for outcome, _, _ in got.values()} == {"ok"}
    engines = {k: v["runs"][0]["provenance"]["engine"]["remote"] for k, v in _verdicts(m).items()}
    assert engines == {k: k.startswith(OTHER) for k in got}      # each part on its own engine


def test_the_test_setup_installs_openssh_server_without_starting_any_service(monkeypatch, tmp_path):
    """`./zmqlab test` installs openssh-server with the other test packages; its postinst would
    start sshd on port 22, so every install runs under a policy-rc.d that denies service starts
    (the host's own when it has one, else the lab's, removed afterwards)."""
    from lab import hostsetup
    assert "openssh-server" in hostsetup.TEST_PACKAGES and hostsetup.PROVIDES["openssh-server"] == "sshd"
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(hostsetup, "POLICY_RC_D", str(policy))
    monkeypatch.setattr(hostsetup, "missing", lambda packages: list(packages))
    monkeypatch.setattr(hostsetup.os, "geteuid", lambda: 0)
    seen = []

    def run(cmd, **kw):
        seen.append((cmd[:2], policy.read_text() if policy.exists() else None))
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(hostsetup.subprocess, "run", run)
    hostsetup.apt_install(["openssh-server"], progress=lambda line: None)
    assert [c for c, _ in seen] == [["apt-get", "update"], ["apt-get", "install"]]
    assert all(text is not None and text.rstrip().endswith("exit 101") for _, text in seen)
    assert not policy.exists()                          # ours: gone again
    policy.write_text("#!/bin/sh\nexit 101\n")          # the host's own: left as it was
    hostsetup.apt_install(["openssh-server"], progress=lambda line: None)
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"
