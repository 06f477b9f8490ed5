"""The Docker edge has one home (lab/engine.py): labels, image names, the sandbox every lab
container gets, and the one retry policy. Pure checks, no engine needed."""
from __future__ import annotations

import os
import re
from pathlib import Path

import docker.errors
import pytest
import requests

from lab import engine
from lab.errors import LabError

LAB = Path(__file__).resolve().parents[1] / "lab"


def _sources():
    return {p: p.read_text() for p in LAB.rglob("*.py") if p.name != "engine.py"}


def test_labels_image_names_and_retries_are_defined_only_in_engine():
    for path, text in _sources().items():
        where = path.relative_to(LAB.parent)
        assert not re.search(r"""["']org\.zmqlab""", text), f"{where} spells a label"
        for repo in engine.LAB_REPOS:
            assert not re.search(rf"""["']{repo}[:"']""", text), f"{where} spells the image name {repo}"
        assert "tenacity" not in text, f"{where} has its own retry policy"
        assert "cap_drop" not in text and "read_only=" not in text, f"{where} builds its own container sandbox"


def test_the_sandbox():
    labels = engine.run_labels("r-1")
    box = engine.sandbox(payload="/opt/zmqlab/scenarios", labels=labels)
    assert box["user"] == "65534:65534" and box["network_mode"] == "none"
    assert box["cap_drop"] == ["ALL"] and box["security_opt"] == ["no-new-privileges"]
    assert box["read_only"] is True and box["tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=256m")
    assert (box["pids_limit"], box["mem_limit"], box["memswap_limit"]) == (512, "512m", "512m")
    # no host path in the engine's view: the payload is an anonymous volume of the run's labels
    assert "volumes" not in box and "binds" not in box
    (mount,) = box["mounts"]
    assert mount["Type"] == "volume" and mount["Target"] == "/opt/zmqlab/scenarios" and not mount["Source"]
    assert mount["VolumeOptions"]["Labels"] == labels and mount["VolumeOptions"]["NoCopy"] is True
    assert box["environment"]["PYTHONPATH"] == "/opt/zmqlab" and box["init"] is True
    assert "mounts" not in engine.sandbox()
    box["environment"]["X"] = "1"                       # each call gets its own copy
    assert "X" not in engine.sandbox()["environment"]


def test_engine_urls(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///x.sock")     # recorded, so use() below is undone
    monkeypatch.delenv("DOCKER_HOST")
    engine.use("")                                      # keeps DOCKER_HOST / the local socket
    assert engine.engine_address() == engine.DEFAULT_SOCKET and not engine.is_remote()
    for bad in ("ftp://x", "ssh://", "root@host", "/var/run/docker.sock"):
        with pytest.raises(LabError, match="is not an engine URL"):
            engine.use(bad)
    engine.use("ssh://root@127.0.0.1:2222")
    assert os.environ["DOCKER_HOST"] == "ssh://root@127.0.0.1:2222" and engine.is_remote()
    assert engine.is_remote("tcp://10.0.0.1:2376") and not engine.is_remote("unix:///x.sock")


def test_engine_failures_are_named(monkeypatch):
    """One line each: unreachable, ssh authentication refused, unknown host key, too old."""
    import paramiko
    import requests.exceptions
    auth = requests.exceptions.ConnectionError(paramiko.AuthenticationException("Authentication failed."))
    assert engine.why_not(auth) == "ssh authentication refused (Authentication failed.)"
    hostkey = paramiko.SSHException("Server '[127.0.0.1]:2222' not found in known_hosts")
    assert engine.why_not(hostkey).startswith("unknown ssh host key (Server '[127.0.0.1]:2222'")
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert engine.why_not(refused) == "Connection refused"

    class Old:
        api = type("A", (), {"timeout": 0})()
        def ping(self): return True
        def version(self): return {"ApiVersion": "1.38", "Version": "18.06"}
        def close(self): pass
    monkeypatch.setattr(engine.docker, "from_env", lambda **kw: Old())
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@old-engine")
    with pytest.raises(LabError) as info:
        engine.connect()
    assert str(info.value) == ("Docker engine at ssh://root@old-engine: engine too old (API 1.38; "
                               "the lab needs 1.41, Docker 20.10 or later)")
    with pytest.raises(LabError, match="^Docker engine at ssh://root@old-engine: engine too old"):
        engine.available()                              # a named engine never falls back to local

    def refuse(**kw):
        raise docker.errors.DockerException("Error while fetching server API version: "
                                            "Authentication failed.") from paramiko.AuthenticationException()
    monkeypatch.setattr(engine.docker, "from_env", refuse)
    with pytest.raises(LabError, match="^Docker engine at ssh://root@old-engine: ssh authentication refused"):
        engine.connect()


def test_run_provenance():
    image = type("I", (), {"id": "sha256:" + "a" * 64, "tags": ["zmqlab-target:x"],
                           "labels": {engine.RECIPE_LABEL: "f" * 64}})()
    who = {"id": "ABCD", "version": "20.10", "api": "1.41", "address": "ssh://h", "remote": True}
    prov = engine.run_provenance(image, who, "sha256:" + "b" * 64)
    assert prov == {"image": image.id, "ref": "zmqlab-target:x", "recipe": "f" * 64, "engine": who,
                    "scenarios": "sha256:" + "b" * 64}


def _response(code):
    return type("R", (), {"status_code": code, "reason": "", "url": ""})()


def test_one_retry_policy_removal_also_retries_conflicts():
    calls = []

    def conflict():
        calls.append(1)
        raise docker.errors.APIError("removal in progress", response=_response(409))
    with pytest.raises(docker.errors.APIError):
        engine.transient_retry(conflict)()
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(docker.errors.APIError):
        engine._removal_retry(conflict)()
    assert len(calls) == 3
    calls.clear()

    def reset():
        calls.append(1)
        raise requests.exceptions.ConnectionError("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        engine._removal_retry(reset)()
    assert len(calls) == 3


def test_the_network_has_one_home_and_is_made_only_for_peers():
    # Cells run with no network at all; only the containers topology's peers join the run's
    # own network, which lab/backends/peers.py makes (not a general engine helper).
    assert not hasattr(engine, "create_network")
    assert engine.sandbox()["network_mode"] == "none"
    assert "network_mode" not in engine.sandbox(network="zmqlab-x-net")
    from lab.backends import docker as backend
    assert not hasattr(backend, "measure_overhead")          # lab.bench measures through run_command


class _Container:
    def __init__(self):
        self.removed = False

    def start(self):
        pass

    def wait(self, timeout):
        return {"StatusCode": 0}

    def logs(self, **kw):
        return b"25.1.2 4.3.4 False\n"

    def remove(self, force):
        self.removed = True


class _Containers:
    def __init__(self):
        self.made = []

    def create(self, image, command, **kwargs):
        self.made.append((image, command, kwargs))
        self.container = _Container()
        return self.container


def test_the_verification_container_gets_the_cell_sandbox_and_the_run_labels():
    from lab import images
    from lab.targets import load_targets
    target = next(t for t in load_targets() if t.name == "pyzmq-25.1.2")
    client = type("Client", (), {"containers": _Containers()})()
    assert images.verify_image(client, target, run_id="images-1") == "25.1.2 4.3.4 False"
    (image, command, kwargs), = client.containers.made
    assert image == "zmqlab-target:pyzmq-25.1.2" and command[0] == engine.PYTHON
    labels = kwargs.pop("labels")
    assert labels[engine.LABEL] == "1" and labels[engine.LABEL_RUN] == "images-1"
    assert {engine.LABEL_PID, engine.LABEL_PIDSTART, engine.LABEL_HOST} <= set(labels)
    assert kwargs.pop("name").startswith("zmqlab-images-1-verify-pyzmq-25.1.2-")
    kwargs.pop("detach")
    assert kwargs == engine.sandbox()
    assert client.containers.container.removed


def test_a_peer_of_the_containers_topology_differs_from_the_sandbox_only_in_its_network():
    box, peer = engine.sandbox(), engine.sandbox(network="zmqlab-r-net")
    assert box.pop("network_mode") == "none" and "network" not in box
    assert peer.pop("network") == "zmqlab-r-net" and "network_mode" not in peer   # docker-py: not both
    assert peer == box
    assert engine.PEER_NETWORK["internal"] is True and engine.PEER_NETWORK["driver"] == "bridge"
    assert engine.PEER_NETWORK["options"] == {"com.docker.network.bridge.inhibit_ipv4": "true"}


def test_an_exec_is_refused_only_by_a_container_gone_stopped_or_paused():
    assert engine.exec_refused(docker.errors.NotFound("gone", response=_response(404)))
    assert engine.exec_refused(docker.errors.APIError("paused", response=_response(409)))
    assert not engine.exec_refused(docker.errors.APIError("boom", response=_response(500)))
