"""Faults applied to one peer of the `containers` topology mid-run (docs/faults.md): what a
fault is (Fault, parsed from a CLI spec once, valid by construction) and what a run report
carries about one that was applied (FaultWindow). Pure: the Docker side that applies them is
lab/backends/faults.py.

A spec reads KIND:TARGET@WHEN+DURATION[=RATE]:

    partition:receiver@1.5+2      drop every packet of the receiver, 1.5 s after the receiver bound, for 2 s
    kill:sender@after200+1        kill -9 the sender once the receiver got 200 pings; back after 1 s
    bandwidth:receiver@1+3=1mbit  the receiver's traffic at 1 mbit/s each way, from 1 s for 3 s
    pause:rx@1+2                  docker pause (rx/tx are short for receiver/sender)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

from lab.errors import LabError

FAULT_KINDS = ("pause", "kill", "partition", "reset", "bandwidth", "delay", "loss")
TARGETS = ("receiver", "sender")
SHORT = {"receiver": "rx", "sender": "tx"}
_ALIASES = {"receiver": "receiver", "rx": "receiver", "sender": "sender", "tx": "sender"}

# What each kind's `rate` is: a tc rate, a tc time, a percentage; the others take none.
_RATE_FORMS = {
    "bandwidth": (r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)", "a rate such as 1mbit or 500kbit"),
    "delay": (r"(\d+(?:\.\d+)?)(us|ms|s)", "a time such as 50ms"),
    "loss": (r"(\d+(?:\.\d+)?)(%)", "a percentage such as 10%"),
}
_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}

# The kernel features each kind needs (lab/backends/faults.py probes them; a kind whose feature
# is missing is `unsupported` with the probe's reason). pause and kill need the engine only.
REQUIRES: dict[str, tuple[str, ...]] = {
    "pause": (), "kill": (),
    "partition": ("iptables",), "reset": ("iptables",),
    # a peer's incoming traffic is shaped on an ifb device it is redirected to ("ingress"):
    # shaping only what a receiver sends would slow its acks, hardly the pings
    "bandwidth": ("tbf", "ingress"), "delay": ("netem", "ingress"), "loss": ("netem", "ingress"),
}
MAX_DURATION_S = 3600.0

_SPEC = re.compile(r"(?P<kind>[a-z]+):(?P<target>[a-z]+)@(?P<when>[^+=]+)\+(?P<duration>[^=]+)(?:=(?P<rate>.+))?")


def _num(value: float) -> str:
    """1.5 -> '1.5', 2.0 -> '2': the shortest form, for labels."""
    return f"{value:g}"


def _problem(kind: Any, target: Any, at_s: Any, after: Any, duration: Any, rate: Any) -> str | None:
    """What is wrong with these fields of a Fault, in words; None when nothing."""
    if kind not in FAULT_KINDS:
        return f"kind {kind!r} is unknown (one of {', '.join(FAULT_KINDS)})"
    if target not in TARGETS:
        return f"target {target!r} is neither receiver nor sender"
    if (at_s is None) == (after is None):
        return "give exactly one of a time (@1.5) and a count (@after200)"
    if at_s is not None and not (isinstance(at_s, (int, float)) and 0 <= at_s <= MAX_DURATION_S):
        return f"start {at_s!r} s is not between 0 and {MAX_DURATION_S:g}"
    if after is not None and not (type(after) is int and after >= 1):
        return f"after {after!r} messages is not a whole number from 1"
    if not isinstance(duration, (int, float)) or duration != duration:
        return f"duration {duration!r} is not a number of seconds"
    if duration < 0 or (duration == 0 and kind != "kill"):
        return f"duration {duration:g} s must be positive" + (" (kill alone takes 0)" if duration == 0 else "")
    if duration > MAX_DURATION_S:
        return f"duration {duration:g} s is over {MAX_DURATION_S:g} s"
    form = _RATE_FORMS.get(kind)
    if form is None:
        return None if rate is None else f"{kind} takes no rate (got ={rate})"
    if rate is None:
        return f"{kind} needs a rate, ={form[1]}"
    m = re.fullmatch(form[0], rate) if isinstance(rate, str) else None
    if m is None or float(m.group(1)) <= 0:
        return f"rate {rate!r} is not {form[1]} above 0"
    if kind == "loss" and float(m.group(1)) > 100:
        return f"loss {rate} is over 100%"
    return None


class FaultUnsupported(Exception):
    """This engine's kernel cannot make the fault (the probe's reason, e.g. no sch_netem): the
    run is `unsupported` with it (lab/backends/faults.py raises it; the runner reports it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str                       # "receiver" | "sender"
    at_s: float | None                # seconds after the receiver bound (the timeline's t0) ...
    after_msgs: int | None            # ... or once the receiver got this many pings in total
    duration_s: float
    rate: str | None = None           # bandwidth "1mbit", delay "50ms", loss "10%"

    def __post_init__(self) -> None:
        problem = _problem(self.kind, self.target, self.at_s, self.after_msgs, self.duration_s, self.rate)
        if problem:
            raise LabError(f"fault {self.kind}: {problem}")

    @property
    def label(self) -> str:
        """Short, for cell keys: partition:rx@1.5+2, kill:tx@after200+1, bandwidth:rx@1+3=1mbit."""
        when = _num(float(self.at_s)) if self.at_s is not None else f"after{self.after_msgs}"
        rate = f"={self.rate}" if self.rate else ""
        return f"{self.kind}:{SHORT[self.target]}@{when}+{_num(float(self.duration_s))}{rate}"

    @property
    def key(self) -> str:
        """The label as a cell key's part (lab/cells.py): no ':', '@', '=' or '%', which file
        names, GitHub artifacts and the key's own '@topology' cannot take:
        ~partition-rx-1.5-2, ~kill-tx-after200-1, ~bandwidth-rx-1-3-1mbit, ~loss-rx-1-2-10pct."""
        when = _num(float(self.at_s)) if self.at_s is not None else f"after{self.after_msgs}"
        rate = "-" + self.rate.replace("%", "pct") if self.rate else ""
        return f"~{self.kind}-{SHORT[self.target]}-{when}-{_num(float(self.duration_s))}{rate}"

    def rate_bits(self) -> int:
        """A bandwidth fault's rate in bit/s."""
        m = re.fullmatch(_RATE_FORMS["bandwidth"][0], self.rate or "")
        if self.kind != "bandwidth" or m is None:
            raise ValueError(f"{self.label} has no bandwidth rate")
        return int(float(m.group(1)) * _BITS[m.group(2)])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "at_s": self.at_s, "after_msgs": self.after_msgs,
                "duration_s": self.duration_s, "rate": self.rate, "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"label"}
        if unknown:
            raise LabError(f"fault: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**{"at_s": None, "after_msgs": None, **{k: data[k] for k in known if k in data}})
        except TypeError as exc:        # a required field missing
            raise LabError(f"fault: {exc}") from None


def parse(spec: str) -> Fault:
    """A CLI spec KIND:TARGET@WHEN+DURATION[=RATE] (module doc); a one-line LabError if bad."""
    text = spec.strip()
    m = _SPEC.fullmatch(text)
    if m is None:
        kind = text.split(":", 1)[0]
        if ":" in text and kind.isalpha() and kind not in FAULT_KINDS:
            raise LabError(f"fault {spec!r}: kind {kind!r} is unknown (one of {', '.join(FAULT_KINDS)})")
        raise LabError(f"fault {spec!r} is not KIND:TARGET@WHEN+DURATION[=RATE] "
                       "(e.g. partition:receiver@1.5+2, kill:sender@after200+1, bandwidth:receiver@1+3=1mbit)")
    target = _ALIASES.get(m["target"])
    if target is None:
        raise LabError(f"fault {spec!r}: target {m['target']!r} is not receiver (rx) or sender (tx)")
    when = m["when"]
    at_s, after = None, None
    try:
        if when.startswith("after"):
            after = int(when[len("after"):])
        else:
            at_s = float(when)
    except ValueError:
        raise LabError(f"fault {spec!r}: start {when!r} is neither seconds (1.5) nor afterK (after200)") from None
    try:
        duration = float(m["duration"])
    except ValueError:
        raise LabError(f"fault {spec!r}: duration {m['duration']!r} is not a number of seconds") from None
    problem = _problem(m["kind"], target, at_s, after, duration, m["rate"])
    if problem:
        raise LabError(f"fault {spec!r}: {problem}")
    return Fault(m["kind"], target, at_s, after, duration, m["rate"])


@dataclass(frozen=True)
class FaultWindow:
    """One applied fault as the run report carries it: on the host's clock (time.time_ns),
    from just before it was applied to just after it was undone (the span in which it may have
    been in effect); `undone` only when the undoing was checked (rules gone, peer running);
    `detail` says how (the rules, the sidecar); `error` what went wrong, if anything."""
    kind: str
    target: str
    start_ns: int
    end_ns: int
    undone: bool
    detail: str = ""
    error: str | None = None
    label: str = ""                   # the Fault's label, to tell two faults of one kind apart
    # surely in effect between these (applying had returned, undoing had not begun): what a
    # "nothing arrived while it lasted" judgement may use; None where not known
    effective_ns: int | None = None
    lifting_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultWindow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
