"""Fault specs (lab/faults.py): parsing good and bad ones, labels, round trips. Pure."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.faults import FAULT_KINDS, REQUIRES, Fault, FaultWindow, parse

REPO = Path(__file__).resolve().parents[1]

GOOD = [
    ("partition:receiver@1.5+2", Fault("partition", "receiver", 1.5, None, 2.0), "partition:rx@1.5+2"),
    ("kill:sender@after200+1", Fault("kill", "sender", None, 200, 1.0), "kill:tx@after200+1"),
    ("bandwidth:receiver@1+3=1mbit", Fault("bandwidth", "receiver", 1.0, None, 3.0, "1mbit"), "bandwidth:rx@1+3=1mbit"),
    ("pause:receiver@1+2", Fault("pause", "receiver", 1.0, None, 2.0), "pause:rx@1+2"),
    ("pause:rx@0+0.25", Fault("pause", "receiver", 0.0, None, 0.25), "pause:rx@0+0.25"),
    ("reset:tx@after1+2", Fault("reset", "sender", None, 1, 2.0), "reset:tx@after1+2"),
    ("delay:tx@2+1=50ms", Fault("delay", "sender", 2.0, None, 1.0, "50ms"), "delay:tx@2+1=50ms"),
    ("loss:rx@2+1=12.5%", Fault("loss", "receiver", 2.0, None, 1.0, "12.5%"), "loss:rx@2+1=12.5%"),
    ("kill:tx@3+0", Fault("kill", "sender", 3.0, None, 0.0), "kill:tx@3+0"),
    ("  bandwidth:tx@1+3=500kbit ", Fault("bandwidth", "sender", 1.0, None, 3.0, "500kbit"), "bandwidth:tx@1+3=500kbit"),
]


@pytest.mark.parametrize("spec,fault,label", GOOD)
def test_good_specs_parse_label_and_round_trip(spec, fault, label):
    got = parse(spec)
    assert got == fault
    assert got.label == label
    assert parse(got.label) == got                                   # a label is a spec too
    assert Fault.from_dict(got.to_dict()) == got
    assert Fault.from_dict(json.loads(json.dumps(got.to_dict()))) == got
    assert got.to_dict()["label"] == label


BAD = [
    ("nope:rx@1+2", "kind 'nope' is unknown (one of pause, kill, partition, reset, bandwidth, delay, loss)"),
    ("pause:bob@1+2", "target 'bob' is not receiver (rx) or sender (tx)"),
    ("pause:rx@1+-2", "duration -2 s must be positive"),
    ("partition:rx@1+0", "duration 0 s must be positive (kill alone takes 0)"),
    ("pause:rx@1+abc", "duration 'abc' is not a number of seconds"),
    ("bandwidth:rx@1+3", "bandwidth needs a rate, =a rate such as 1mbit or 500kbit"),
    ("bandwidth:rx@1+3=fast", "rate 'fast' is not a rate such as 1mbit or 500kbit above 0"),
    ("bandwidth:rx@1+3=0mbit", "rate '0mbit' is not a rate such as 1mbit or 500kbit above 0"),
    ("delay:rx@1+3=50", "rate '50' is not a time such as 50ms above 0"),
    ("loss:rx@1+1=200%", "loss 200% is over 100%"),
    ("pause:rx@1+2=1mbit", "pause takes no rate (got =1mbit)"),
    ("pause:rx@soon+1", "start 'soon' is neither seconds (1.5) nor afterK (after200)"),
    ("kill:tx@after0+1", "after 0 messages is not a whole number from 1"),
    ("kill:tx@after1.5+1", "start 'after1.5' is neither seconds (1.5) nor afterK (after200)"),
    ("pause:rx@-1+1", "start -1.0 s is not between 0 and 3600"),
    ("pause:rx@1+7200", "duration 7200 s is over 3600 s"),
    ("pause:rx@nan+1", "start nan s is not between 0 and 3600"),
    ("Pause:rx@1+2", "kind 'Pause' is unknown (one of pause, kill, partition, reset, bandwidth, delay, loss)"),
    ("pause:rx@1+2=x=y", "pause takes no rate (got =x=y)"),
]


@pytest.mark.parametrize("spec,why", BAD)
def test_bad_specs_are_one_line_naming_the_problem(spec, why):
    with pytest.raises(LabError) as err:
        parse(spec)
    assert str(err.value) == f"fault {spec!r}: {why}"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec", ["garbage", "", "pause", "pause:rx", "pause:rx@1", "pause:rx@+1", "pause:rx@1+2="])
def test_malformed_specs_show_the_form(spec):
    with pytest.raises(LabError, match=r"is not KIND:TARGET@WHEN\+DURATION\[=RATE\] \(e\.g\. partition:receiver"):
        parse(spec)


def test_a_fault_is_valid_by_construction_and_from_dict_checks_fields():
    with pytest.raises(LabError, match="^fault pause: give exactly one of a time"):
        Fault("pause", "receiver", 1.0, 5, 1.0)
    with pytest.raises(LabError, match="^fault pause: give exactly one of a time"):
        Fault("pause", "receiver", None, None, 1.0)
    with pytest.raises(LabError, match="^fault pause: target 'rx' is neither receiver nor sender"):
        Fault("pause", "rx", 1.0, None, 1.0)                          # the dataclass takes the full name
    with pytest.raises(LabError, match="^fault kill: after True messages"):
        Fault("kill", "sender", None, True, 1.0)
    with pytest.raises(LabError, match="^fault: unknown field\\(s\\) when"):
        Fault.from_dict({"kind": "pause", "target": "receiver", "at_s": 1, "duration_s": 1, "when": 3})
    with pytest.raises(LabError, match="^fault: .*duration_s"):                # at_s/after_msgs may be left out
        Fault.from_dict({"kind": "pause", "target": "receiver", "at_s": 1})
    with pytest.raises(LabError, match="^fault bandwidth: rate 5 is not"):
        Fault.from_dict({"kind": "bandwidth", "target": "receiver", "at_s": 1, "duration_s": 1, "rate": 5})


def test_rates_in_bits_and_what_each_kind_needs():
    assert parse("bandwidth:rx@1+3=1mbit").rate_bits() == 1_000_000
    assert parse("bandwidth:rx@1+3=500kbit").rate_bits() == 500_000
    assert parse("bandwidth:rx@1+3=2mbps").rate_bits() == 16_000_000
    with pytest.raises(ValueError):
        parse("delay:rx@1+3=5ms").rate_bits()
    assert set(REQUIRES) == set(FAULT_KINDS)
    assert REQUIRES["pause"] == REQUIRES["kill"] == ()
    assert "netem" in REQUIRES["delay"] and "netem" in REQUIRES["loss"] and "tbf" in REQUIRES["bandwidth"]


def test_a_window_round_trips_through_json():
    w = FaultWindow("partition", "receiver", 1_000, 2_000, True, "iptables -I INPUT 1 -i eth0 -j DROP", None,
                    "partition:rx@1.5+2")
    assert FaultWindow.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    bad = FaultWindow("pause", "sender", 5, 9, False, "docker pause x", "peer is exited after unpause")
    assert FaultWindow.from_dict(bad.to_dict()) == bad
    with pytest.raises(Exception):
        w.undone = False                                              # frozen


def test_the_sidecar_image_is_named_in_the_image_namespace():
    code = "from lab import sidecar; print(sidecar.image_ref())"
    run = lambda env: subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,  # noqa: E731
                                     env=env, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "ZMQLAB_IMAGE_NAMESPACE"}
    assert run(env) == "zmqlab-sidecar:bookworm"
    assert run(dict(env, ZMQLAB_IMAGE_NAMESPACE="zmqlabtest-x1")) == "zmqlabtest-x1-zmqlab-sidecar:bookworm"


def test_the_sidecar_recipe_pins_every_deb_with_its_hash():
    from lab import sidecar
    debs = sidecar.debs()
    names = {d.file.split("_")[0] for d in debs}
    assert {"iptables", "iproute2"} <= names
    assert all(len(d.sha256) == 64 and d.url.endswith(".deb") for d in debs)
    assert len(sidecar.recipe_hash()) == 64
