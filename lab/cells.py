"""Cells: one point of the sweep (target x pattern x transport x variant x poll x sync x topology).

A cell is what gets run N times and judged once. Its `key` is the stable id used for file
names, matrix lookups and merges, so it must never depend on the order things were asked for.

Topology (docs/topology.md): where the receiver and the senders run. `threads` (the seed's
setting, the default) keeps every key, column and dict exactly as before topologies existed:
baseline/expected.json and every older results directory name their cells that way. Other
topologies add '@<topology>' to the label, and a cell whose sender runs another pin than its
receiver (`sender`, containers only) is keyed 'SENDER>RECEIVER/...':
    pyzmq-25.1.2/pushpull/tcp/default                       threads
    pyzmq-25.1.2/pushpull/tcp/default@containers            one pin, two containers
    libzmq-4.1.6>pyzmq-26.4.0/pubsub/tcp/default@containers  4.1.6 sends, 26.4.0 receives

Socket options (scenarios/options.py: --heartbeat, --immediate, --reconnect-ivl, --hwm,
--xpub-nodrop) are one more axis, named after the other options and before the topology; a cell
without any keeps its key, argv and dict exactly as before:
    pyzmq-25.1.2/pushpull/tcp/default+hb100-300+immediate@containers
    pyzmq-25.1.2/pubsub/tcp/default+xpub+hwm10+nodrop

A fault (lab/faults.py, docs/faults.md) applied to one peer mid-run is the last axis, on
containers cells only, named after the options: its runs log every ping (--ping-log) so the
verdict can tell loss inside the fault's window from loss outside it:
    pyzmq-25.1.2/pushpull/tcp/default+hb100-300~partition-rx-1.5-2@containers
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from lab.errors import LabError
from lab.faults import Fault
from scenarios import flags
from scenarios.flags import PATTERNS, SYNC_MODES, TRANSPORTS
from scenarios.options import OptionError, SockOpts

TOPOLOGIES = ("threads", "processes", "containers")
# What crosses each topology's boundary: inproc lives inside one process (a second process, let
# alone a second container, cannot connect to it), and containers share no file system for ipc.
TOPOLOGY_TRANSPORTS = {"threads": TRANSPORTS, "processes": ("ipc", "tcp"), "containers": ("tcp",)}

# One catalog for the lab and the scenario programs (scenarios/flags.py is pure, no zmq).
# The first variant of each pattern is its primary one: Cell(variant="default") maps to it,
# so a caller never has to know that clientserver has no variant literally called "default".
VARIANTS: dict[str, tuple[str, ...]] = {p: flags.variants(p) for p in PATTERNS}
XPUB_PATTERNS = ("pubsub",)     # the XPUB welcome-message handshake only exists for PUB/SUB
ALL_VARIANTS = tuple(dict.fromkeys(v for vs in VARIANTS.values() for v in vs))
FAULT_TAIL_S = 1.0      # a fault cell's senders go on this long after the fault ends (recovery)
RECEIVER_JOURNAL = "/tmp/zmqlab-receiver.journal"   # kill:receiver: in the receiver container's tmpfs


def _known(names: Iterable[str]) -> str:
    return ", ".join(names)


def _check_count(name: str, value: object) -> int:
    # bool is an int subclass; `--threads True` is a bug, not a request for one thread.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabError(f"{name} must be a whole number, not {value!r}")
    if value < 1:
        raise LabError(f"{name} must be at least 1 (got {value})")
    return value


@dataclass(frozen=True)
class Cell:
    target: str
    pattern: str
    transport: str
    variant: str = "default"
    poll: bool = False
    sync: str = "none"
    threads: int = 10
    msgs: int = 1000
    topology: str = "threads"
    sender: str = ""               # the sender's target when it is not `target` (the receiver's)
    sockopts: SockOpts = SockOpts()    # none by default: the cell of every earlier run
    fault: Fault | None = None         # applied to one peer mid-run (containers only)
    # pings sent with ZMQ_DONTWAIT (--nowait): a full queue refuses with EAGAIN, counted apart
    # from loss (XPUB_NODROP's promise: lab/expectations.py xpub-nodrop)
    nowait: bool = False

    def __post_init__(self) -> None:
        if not self.target:
            raise LabError("a cell needs a target name")
        if self.pattern not in PATTERNS:
            raise LabError(f"unknown pattern {self.pattern!r} (known: {_known(PATTERNS)})")
        if self.transport not in TRANSPORTS:
            raise LabError(f"unknown transport {self.transport!r} (known: {_known(TRANSPORTS)})")
        variants = VARIANTS[self.pattern]
        if self.variant == "default" and "default" not in variants:
            object.__setattr__(self, "variant", variants[0])
        elif self.variant not in variants:
            raise LabError(f"unknown variant {self.variant!r} for {self.pattern} "
                           f"(known: {_known(variants)})")
        if self.variant in flags.RECEIVER_CONNECTS and self.topology != "containers":
            raise LabError(f"variant {self.variant} needs topology containers: each sender socket binds "
                           f"its own port of the sender's container, not {self.topology}")
        if not isinstance(self.nowait, bool):
            raise LabError(f"nowait must be true or false, not {self.nowait!r}")
        if not isinstance(self.poll, bool):
            raise LabError(f"poll must be true or false, not {self.poll!r}")
        if self.sync not in SYNC_MODES:
            raise LabError(f"unknown sync mode {self.sync!r} (known: {_known(SYNC_MODES)})")
        if self.sync == "xpub" and self.pattern not in XPUB_PATTERNS:
            raise LabError(f"sync 'xpub' only applies to {_known(XPUB_PATTERNS)}, not {self.pattern}")
        _check_count("threads", self.threads)
        _check_count("msgs", self.msgs)
        self._check_topology()
        if not isinstance(self.sockopts, SockOpts):
            raise LabError(f"a cell's socket options must be a SockOpts, not {self.sockopts!r}")
        problem = self.sockopts.check(self.pattern, self.transport, self.sync)
        if problem:
            raise LabError(problem)
        if self.fault is not None:
            if not isinstance(self.fault, Fault):
                raise LabError(f"a cell's fault must be a Fault, not {self.fault!r}")
            if self.topology != "containers":
                raise LabError(f"a fault ({self.fault.label}) needs topology containers: the lab "
                               f"applies it to a peer's container, not {self.topology}")
            if self.fault.after_msgs is not None and self.fault.after_msgs >= self.threads * self.msgs:
                raise LabError(f"fault {self.fault.label}: the run sends {self.threads * self.msgs} pings in "
                               f"all, so after {self.fault.after_msgs} nothing would be left to show it")

    def _check_topology(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise LabError(f"unknown topology {self.topology!r} (known: {_known(TOPOLOGIES)})")
        allowed = TOPOLOGY_TRANSPORTS[self.topology]
        if self.transport not in allowed:
            why = "inproc cannot cross processes" if self.topology == "processes" else \
                "only tcp reaches from one container into another"
            raise LabError(f"topology {self.topology} needs {' or '.join(allowed)}, not {self.transport} "
                           f"({why})")
        if not isinstance(self.sender, str):
            raise LabError(f"a cell's sender must be a target name, not {self.sender!r}")
        if self.sender == self.target:
            object.__setattr__(self, "sender", "")      # the same pin: one key for the diagonal A>A
        if self.sender and self.topology != "containers":
            raise LabError(f"a sender of another target ({self.sender}) needs topology containers, "
                           f"not {self.topology}: only containers hold two different pins")

    @property
    def options(self) -> str:
        """Variant, then '+poll', then '+xpub', then the socket options ('+hb100-300',
        '+immediate', '+rivl50', '+hwm10', '+nodrop'): the label of every topology."""
        return self.variant + ("+poll" if self.poll else "") + ("+xpub" if self.sync == "xpub" else "") \
            + ("+nowait" if self.nowait else "") + self.sockopts.label + (self.fault.key if self.fault else "")

    @property
    def fault_span_s(self) -> float:
        """How long a fault cell's senders send: to FAULT_TAIL_S past the fault's end (0: no fault).
        After K pings: paced so that what is left after the K-th (msgs - K/threads per thread)
        lasts the fault and the tail."""
        if self.fault is None:
            return 0.0
        rest = self.fault.duration_s + FAULT_TAIL_S
        if self.fault.after_msgs is not None:
            return self.msgs * rest / (self.msgs - self.fault.after_msgs / self.threads)
        return (self.fault.at_s or 0.0) + rest

    @property
    def label(self) -> str:
        """The variant part of the key: the options, then '@<topology>' unless threads."""
        return self.options + ("" if self.topology == "threads" else "@" + self.topology)

    @property
    def row(self) -> str:
        """The matrix row: the target, or 'SENDER>RECEIVER' for a pair of two pins."""
        return f"{self.sender}>{self.target}" if self.sender else self.target

    @property
    def sender_target(self) -> str:
        """The pin the senders run (the receiver's own unless a pair of two pins)."""
        return self.sender or self.target

    @property
    def key(self) -> str:
        """Stable id, e.g. 'pyzmq-25.1.2/pubsub/tcp/default+poll' (threads/msgs are sweep params)."""
        return f"{self.row}/{self.pattern}/{self.transport}/{self.label}"

    @property
    def column(self) -> tuple[str, str, str]:
        """The matrix column this cell belongs to (everything but the row)."""
        return (self.pattern, self.transport, self.label)

    @property
    def order(self) -> tuple[int, ...]:
        """Canonical column order: pattern, transport, variant, sync, poll, socket options (none
        first), topology (as in the constants): a variant's topologies stand side by side."""
        return (PATTERNS.index(self.pattern), TRANSPORTS.index(self.transport),
                VARIANTS[self.pattern].index(self.variant), SYNC_MODES.index(self.sync), int(self.poll),
                int(self.nowait), self.sockopts.label, TOPOLOGIES.index(self.topology), self.fault.key if self.fault else "")

    def scenario_argv(self, stall: float, sleep: float, extra: Sequence[str] = ()) -> list[str]:
        """Arguments for `python -m scenarios` that run exactly this cell."""
        argv = ["--pattern", self.pattern, "--transport", self.transport,
                "--threads", str(self.threads), "--msgs", str(self.msgs)]
        if self.poll:
            argv.append("--poll")
        if self.nowait:
            argv.append("--nowait")
        if self.sync != "none":
            argv += ["--sync", self.sync]
        if self.variant != "default":
            argv += ["--variant", self.variant]
        if self.topology != "threads":
            argv += ["--topology", self.topology]
        argv += self.sockopts.argv()
        if self.fault is not None:
            # every ping's times (the window's verdict), and senders paced to go on sending
            # until FAULT_TAIL_S after the fault ends: a fault after the last ping shows nothing
            # and the whole stall window for stragglers once the senders' counts are known (a
            # heal leaves TCP backed off: a latency-derived drain called late pings lost)
            argv += ["--ping-log", "--full-drain", "--rate", _num(round(self.msgs / self.fault_span_s, 3))]
            if self.fault.kind == "kill" and self.fault.target == "sender":
                argv += ["--incarnations", "2"]     # the receiver expects the sender a second time
            elif self.fault.kind == "kill":
                # the receiver started in the killed one's place takes over its counts from
                # here (scenarios/journal.py); the container's tmpfs outlives the process
                argv += ["--journal", RECEIVER_JOURNAL]
            if self.fault.after_msgs is not None:   # the receiver says when the K-th ping came
                argv += ["--mark-after", str(self.fault.after_msgs)]
        argv += ["--stall", _num(stall), "--sleep", _num(sleep)]
        return argv + [str(a) for a in extra]

    def to_dict(self) -> dict:
        """Threads cells without the topology fields, cells without socket options without
        `sockopts`: the dicts baselines and old results hold."""
        data = asdict(self)
        if self.topology == "threads":
            del data["topology"]
        if not self.sender:
            del data["sender"]
        if self.sockopts:
            data["sockopts"] = self.sockopts.to_dict()
        else:
            del data["sockopts"]
        if not self.nowait:
            del data["nowait"]
        if self.fault is not None:
            data["fault"] = self.fault.to_dict()
        else:
            del data["fault"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Cell":
        """Also a cell from before topologies (no 'topology', no 'sender': threads, one pin)."""
        try:
            fields = {k: data[k] for k in ("target", "pattern", "transport", "variant",
                                           "poll", "sync", "threads", "msgs")}
        except KeyError as exc:
            raise LabError(f"cell description lacks {exc.args[0]!r}") from None
        try:
            sockopts = SockOpts.from_dict(data.get("sockopts"))
        except (OptionError, TypeError) as exc:
            raise LabError(f"cell description has bad socket options: {exc}") from None
        fault = Fault.from_dict(data["fault"]) if data.get("fault") else None
        return cls(**fields, topology=data.get("topology", "threads"), sender=data.get("sender", ""),
                   sockopts=sockopts, fault=fault, nowait=data.get("nowait", False))


def _num(value: float) -> str:
    """'5' rather than '5.0' for whole numbers; the scenario parses either."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_list(value: str | Iterable[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    """'pair,pubsub' / 'all' / ['pair'] -> names checked against `known`, duplicates dropped.

    The result keeps the caller's order; expand() puts cells in canonical order anyway.
    """
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip()]
    else:
        names = [str(n).strip() for n in value]
    if not names:
        raise LabError(f"no {what} given (known: {_known(known)}, or 'all')")
    if "all" in names:
        if names != ["all"]:
            raise LabError(f"'all' cannot be combined with other {what} names")
        return tuple(known)
    for name in names:
        if name not in known:
            raise LabError(f"unknown {what} {name!r} (known: {_known(known)})")
    return tuple(dict.fromkeys(names))


def parse_poll_modes(value: str | Iterable[bool]) -> tuple[bool, ...]:
    """'off', 'on', 'both'/'all', 'off,on' (or booleans) -> poll modes."""
    if not isinstance(value, str):
        modes = tuple(dict.fromkeys(value))
        if not modes or any(not isinstance(m, bool) for m in modes):
            raise LabError(f"poll modes must be true/false values, not {value!r}")
        return modes
    words = {"off": False, "no": False, "false": False, "on": True, "yes": True, "true": True}
    if value.strip() in ("both", "all"):
        return (False, True)
    return tuple(words[w] for w in parse_list(value, tuple(words), "poll mode"))


def parse_sockopts(value: str | Iterable[SockOpts]) -> tuple[SockOpts, ...]:
    """'none,hb100-300+immediate,hwm10' (each a label's suffix without its first '+'; 'none': no
    option) or SockOpts values -> the socket-option sets, duplicates dropped."""
    if not isinstance(value, str):
        sets = tuple(dict.fromkeys(value))
        if not sets or any(not isinstance(s, SockOpts) for s in sets):
            raise LabError(f"socket options must be SockOpts values, not {value!r}")
        return sets
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise LabError("no socket options given ('none', or e.g. hb100-300+immediate,hwm10)")
    try:
        return tuple(dict.fromkeys(SockOpts.from_label(n) for n in names))
    except OptionError as exc:
        raise LabError(str(exc)) from None


def _target_name(target: object) -> str:
    name = getattr(target, "name", target)     # accept lab.targets.Target or a plain name
    if not isinstance(name, str) or not name:
        raise LabError(f"not a target: {target!r}")
    return name


def expand(targets: Sequence[object], patterns: Sequence[str] | str = PATTERNS,
           transports: Sequence[str] | str = TRANSPORTS,
           poll_modes: Sequence[bool] | str = (False, True),
           variants: Sequence[str] | str | None = None,
           sync_modes: Sequence[str] | str = ("none",),
           threads: int = 10, msgs: int = 1000,
           topologies: Sequence[str] | str = ("threads",),
           senders: Sequence[object] = (),
           sockopts: Sequence[SockOpts] | str = (SockOpts(),),
           faults: Sequence[Fault | None] = (None,), nowait: bool = False) -> tuple[Cell, ...]:
    """Every cell of the sweep, targets in the given (pin) order, the rest in canonical order.

    Per-pattern axes collapse where they do not apply, so `--sync none,xpub --patterns all`
    gives pubsub both modes and every other pattern just 'none':
      variants=None   -> each pattern's primary variant only
      variants='all'  -> every variant of every pattern
      variants=[...]  -> those that exist for a pattern (its primary one if none does);
                         a name no selected pattern knows is an error
      sync 'xpub'     -> pubsub only; asking for it without pubsub is an error
    Topologies collapse the same way over transports, so `--topology all --transports all` is
    a whole sweep rather than an error: threads runs every transport, processes ipc and tcp,
    containers tcp only (TOPOLOGY_TRANSPORTS). A topology none of the chosen transports can
    cross (`--transports inproc --topology processes`) is an error naming both.
      senders=[...]   -> every target (as the receiver) with each of these pins as its sender:
                         containers only; a sender equal to the target is the plain diagonal cell
      sockopts=[...]  -> socket-option sets, each on the cells it applies to (heartbeat, immediate
                         and reconnect-ivl over ipc/tcp, nodrop on pubsub+xpub); a set that applies
                         to none of the chosen cells is an error naming why
      faults=[...]    -> each fault (None: none) on every containers cell; a fault asked for
                         without the containers topology is an error
      nowait=True     -> every cell sends its pings with ZMQ_DONTWAIT (refusals counted apart)
    """
    _check_count("threads", threads)
    _check_count("msgs", msgs)
    faults = tuple(dict.fromkeys(faults)) or (None,)
    if any(faults) and "containers" not in parse_list(topologies, TOPOLOGIES, "topology"):
        raise LabError("faults are applied to a peer's container: they need --topology containers")
    names = tuple(dict.fromkeys(_target_name(t) for t in targets))
    if not names:
        raise LabError("no targets to run")
    chosen_patterns = parse_list(patterns, PATTERNS, "pattern")
    chosen_transports = parse_list(transports, TRANSPORTS, "transport")
    polls = parse_poll_modes(poll_modes)
    syncs = parse_list(sync_modes, SYNC_MODES, "sync mode")
    if "xpub" in syncs and not set(XPUB_PATTERNS) & set(chosen_patterns):
        raise LabError(f"sync 'xpub' only applies to {_known(XPUB_PATTERNS)}, which is not selected")
    chosen_topologies = parse_list(topologies, TOPOLOGIES, "topology")
    for topology in chosen_topologies:
        if not set(TOPOLOGY_TRANSPORTS[topology]) & set(chosen_transports):
            raise LabError(f"topology {topology} needs {' or '.join(TOPOLOGY_TRANSPORTS[topology])}, "
                           f"which is not among the transports ({_known(chosen_transports)})")
    option_sets = parse_sockopts(sockopts)
    sender_names = tuple(dict.fromkeys(_target_name(t) for t in senders)) or ("",)
    if sender_names != ("",) and chosen_topologies != ("containers",):
        raise LabError("a sender of another target runs in containers only, not "
                       f"{_known(t for t in chosen_topologies if t != 'containers')}")
    wanted_variants: tuple[str, ...] | None = None
    if variants is not None and variants != "all":
        wanted_variants = parse_list(variants, ALL_VARIANTS, "variant")
        offered = {v for p in chosen_patterns for v in VARIANTS[p]}
        for v in wanted_variants:
            if v not in offered:
                raise LabError(f"variant {v!r} does not exist for the selected patterns "
                               f"({_known(chosen_patterns)})")

    def variants_for(pattern: str) -> tuple[str, ...]:
        own = VARIANTS[pattern]
        if variants == "all":
            return own
        if wanted_variants is None:
            return own[:1]
        return tuple(v for v in own if v in wanted_variants) or own[:1]

    def syncs_for(pattern: str) -> tuple[str, ...]:
        return tuple(s for s in SYNC_MODES if s in syncs and (s == "none" or pattern in XPUB_PATTERNS)) \
            or ("none",)

    cells = []
    for target in names:
        for sender in sender_names:
            for pattern in sorted(chosen_patterns, key=PATTERNS.index):
                for transport in sorted(chosen_transports, key=TRANSPORTS.index):
                    for variant in variants_for(pattern):
                        for sync in syncs_for(pattern):
                            for poll in sorted(polls):
                                for opts in sorted(option_sets, key=lambda o: o.label):
                                    if opts.check(pattern, transport, sync):
                                        continue
                                    for topology in sorted(chosen_topologies, key=TOPOLOGIES.index):
                                        if transport not in TOPOLOGY_TRANSPORTS[topology]:
                                            continue
                                        if variant in flags.RECEIVER_CONNECTS and topology != "containers":
                                            continue        # its senders bind: containers only
                                        for fault in faults:
                                            if fault is None or topology == "containers":
                                                cells.append(Cell(target, pattern, transport, variant, poll, sync,
                                                                  threads, msgs, topology, sender, opts, fault,
                                                                  nowait))
    for v in wanted_variants or ():
        if not any(c.variant == v for c in cells) and v in flags.RECEIVER_CONNECTS:
            raise LabError(f"variant {v} needs --topology containers (its senders bind their own ports)")
    for opts in option_sets:
        if not any(c.sockopts == opts for c in cells):
            why = next((w for p in chosen_patterns for t in chosen_transports for s in syncs_for(p)
                        if (w := opts.check(p, t, s))), "no chosen cell carries them")
            raise LabError(f"socket options {opts.label.lstrip('+') or 'none'} apply to none of the chosen "
                           f"cells: {why}")
    return tuple(dict.fromkeys(cells))       # a sender equal to its target repeats the diagonal
