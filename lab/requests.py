"""What the user asked for, one frozen object per use case, validated once.

A task hands its command-line values to a request's `from_cli`; everything that can be wrong
with them (names, sizes, the flag catalog, output paths) is checked there, once, before any
backend starts. From then on the request travels unchanged: the cells it expands to, the
scenario argv of each (Cell.scenario_argv), and the parameters a results directory records
(`params`) all derive from it. Adding an axis means one field on `Axes` and its expansion
rule in lab/cells.py.

Topologies (docs/topology.md): `--topology threads,processes,containers` (or `all`) is one more
axis; `--sender-target A --receiver-target B` runs A's senders against B's receiver, which only
two containers can hold, so it implies `--topology containers` over tcp (a topology or transport
list that leaves no such cell is an error, one that includes others collapses to it).

Socket options (scenarios/options.py) are an axis too: `--sockopts none,hb100-300+immediate,hwm10`
(each set named as in a cell's label, 'none' for none) runs each set on the cells it applies to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lab.cells import (PATTERNS, TOPOLOGIES, TOPOLOGY_TRANSPORTS, TRANSPORTS, XPUB_PATTERNS, Cell, expand,
                       parse_list, parse_poll_modes, parse_sockopts)
from lab.errors import LabError
from lab.faults import Fault
from lab.faults import parse as parse_fault
from lab.results import check_output_dir, check_output_file
from lab.targets import Target, load_targets, select
from scenarios import flags
from scenarios.options import SockOpts

BACKENDS = ("auto", "docker", "local")
# Upper bounds that keep every derived figure (hard timeouts, totals) representable: far above
# any useful experiment, low enough that a typo (--threads 100000000000000000000) is refused.
LIMITS = {"threads": 10_000, "msgs": 100_000_000, "repeat": 100_000, "max_repeat": 100_000, "jobs": 64}

# `invoke matrix` with no flags: a quick, useful sweep (two stock wheels and one draft build,
# every pattern, transport and poll/xpub variant, 3 runs each): a few minutes when warm.
MATRIX_DEFAULTS = dict(targets="pyzmq-25.1.2,pyzmq-27.3.0,pyzmq-25.1.2-draft", patterns="all",
                       transports="all", variants="primary", poll="both", sync="none,xpub",
                       threads=20, msgs=200, repeat=3, stall=2.0, sleep=0.0, topology="threads")
# A CI sweep's share per target: every pattern x transport, poll off and on, each pattern's
# primary variant; sized so a target takes minutes on a CI runner.
SWEEP_DEFAULTS = dict(patterns="all", transports="all", poll="both", threads=10, msgs=100, repeat=5, stall=2.0)
MAX_REPEAT = 20        # upgrade-check: most runs a cell gets while its intervals still overlap
# `invoke interop`: every ordered pair of the buildable pins in two containers, over tcp, for the
# patterns whose senders and receiver are different sockets that could meet across versions.
INTEROP_DEFAULTS = dict(targets="all", patterns="pubsub,pushpull,routerdealer,pair", sync="none,xpub", poll="off",
                        threads=10, msgs=100, repeat=3, stall=2.0, sleep=0.0, jobs=2)
# upgrade-check's rolling upgrade: the mixed pairs of FROM and TO, on the patterns a fleet
# mid-upgrade mixes (a PUB of one version, SUBs of the other; pipelines; brokers).
ROLLING_PATTERNS = ("pubsub", "pushpull", "routerdealer")
PAIR_FLAGS = "--sender-target/--receiver-target"


def check_sizes(**values: int | None) -> None:
    for name, value in values.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int):
            raise LabError("%s must be a whole number, not %r" % (flag, value))
        if value < 1:
            raise LabError("%s must be at least 1" % flag)
        if value > LIMITS[name]:
            raise LabError("%s must be at most %d" % (flag, LIMITS[name]))


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise LabError("unknown backend %r (known: %s)" % (name, ", ".join(BACKENDS)))
    return name


@dataclass(frozen=True)
class RunSettings:
    """How each run of a cell is run: repeats, the stall window, the pause before the
    shutdown message, the hard bound, and extra scenario flags (--inject, tests only)."""
    repeat: int = 5
    stall: float = 2.0
    sleep: float = 0.0
    timeout: float | None = None          # hard per-run bound; None: derived from the cell
    extra: tuple[str, ...] = field(default=())

    # (class constants, not fields)
    MAX_SECONDS = 7 * 24 * 3600          # --stall, --sleep, --timeout: beyond this is a typo
    START_MARGIN_S = 1.0                 # a run's interpreter start and imports, in a --timeout's floor
    MAX_HARD_TIMEOUT_S = 1e8             # ~3 years: still representable by every clock and timer
    CONTAINERS_MARGIN_S = 5.0            # a containers run: two execs, the report channel's hello

    def __post_init__(self):
        check_sizes(repeat=self.repeat)
        for name in ("stall", "sleep"):
            if not math.isfinite(getattr(self, name)):
                raise LabError("--%s must be a finite number" % name)
        if self.stall <= 0:
            raise LabError("--stall must be above 0 seconds")
        if self.sleep < 0:
            raise LabError("--sleep must not be negative")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise LabError("--timeout must be a positive number of seconds")
        for name in ("stall", "sleep", "timeout"):
            value = getattr(self, name)
            if value is not None and value > self.MAX_SECONDS:
                raise LabError("--%s must be at most %d seconds (a week)" % (name, self.MAX_SECONDS))
        # A run is only classified by its own watchdog after --sleep and a --stall window
        # without progress (plus its start): a hard timeout below that turns every slow start
        # into a false "deadlock" classified by the lab.
        floor = self.stall + self.sleep + self.START_MARGIN_S
        if self.timeout is not None and self.timeout < floor:
            raise LabError("--timeout %g s is below what a run needs: --stall + --sleep + %g s start = %g s"
                           % (self.timeout, self.START_MARGIN_S, floor))

    @classmethod
    def from_cli(cls, repeat: int, stall: float, sleep: float, timeout: float = 0.0,
                 inject: str | None = None) -> "RunSettings":
        return cls(repeat=repeat, stall=stall, sleep=sleep, timeout=timeout or None,
                   extra=("--inject", inject) if inject else ())

    def hard_timeout(self, cell: Cell) -> float:
        """Above the stall window by a margin that grows with the work, so a slow but moving
        run is never killed; the in-process watchdog normally ends a stuck run long before."""
        margin = self.CONTAINERS_MARGIN_S if cell.topology == "containers" else 0.0
        if self.timeout:
            return self.timeout + margin
        # --poll waits 1 ms per poll, up to two per ping, in every thread at once: 5 ms a ping
        # leaves room for a loaded machine.
        polls = cell.msgs * 0.005 if cell.poll else 0.0
        paced = cell.fault_span_s       # a fault cell's senders are paced to outlast the fault
        bound = self.stall + self.sleep + 20.0 + cell.threads * cell.msgs / 2000.0 + polls + paced + margin
        if not bound <= self.MAX_HARD_TIMEOUT_S:
            raise LabError("%s is too large to bound: its hard timeout would be %.3g s; lower --threads "
                           "or --msgs" % (cell.key, bound))
        return bound

    def argv(self, cell: Cell) -> list[str]:
        """The one place a cell becomes the scenario program's argv."""
        return cell.scenario_argv(self.stall, self.sleep, ["--quiet", *self.extra])

    def check(self, cell: Cell):
        """The cell as the harness will parse it (its flags.parse namespace); a bad flag is a
        LabError before any run, and a cell too large to bound is refused."""
        self.hard_timeout(cell)
        if cell.fault is not None and self.stall < cell.fault.duration_s + FAULT_STALL_MARGIN_S:
            # a partition or a pause is silence by construction: a stall window shorter than it
            # (plus TCP's retransmission backoff after the heal) would call every run a deadlock
            raise LabError("%s: --stall %g is too short for a %g s fault: give at least %g (its duration + %g s)"
                           % (cell.key, self.stall, cell.fault.duration_s,
                              cell.fault.duration_s + FAULT_STALL_MARGIN_S, FAULT_STALL_MARGIN_S))
        # A containers cell's argv lacks the role and addresses: the backend adds them to each
        # container's copy. The receiver's own flags are what the run report states.
        role = ["--role", "receiver"] if cell.topology == "containers" else []
        if cell.variant in flags.RECEIVER_CONNECTS:     # the sender's address, as the backend adds it
            role += ["--sender-at", "tcp://sender:1"]
        try:
            return flags.parse(self.argv(cell) + role)
        except flags.FlagError as exc:
            raise LabError("%s: %s" % (cell.key, exc)) from None


FAULT_STALL_MARGIN_S = 3.0     # a fault cell's stall window over the fault's duration


@dataclass(frozen=True)
class Axes:
    """The sweep's axes besides targets, as the user named them; `cells` expands them."""
    patterns: tuple[str, ...] = PATTERNS
    transports: tuple[str, ...] = TRANSPORTS
    variants: str | tuple[str, ...] = "primary"     # 'primary', 'all' or names
    polls: tuple[bool, ...] = (False, True)
    syncs: tuple[str, ...] = ("none",)
    topologies: tuple[str, ...] = ("threads",)
    sockopts: tuple[SockOpts, ...] = (SockOpts(),)
    faults: tuple[Fault | None, ...] = (None,)
    nowait: bool = False            # every cell's pings with ZMQ_DONTWAIT (not an axis: one or the other)

    @classmethod
    def from_cli(cls, patterns: str = "all", transports: str = "all", variants: str = "primary",
                 poll: str = "both", sync: str = "none", sync_is_default: bool = False,
                 topology: str = "threads", sockopts: str = "none", faults: str = "none",
                 nowait: bool = False) -> "Axes":
        chosen = parse_list(patterns, PATTERNS, "pattern")
        syncs = parse_list(sync, ("none", "xpub"), "sync mode")
        if sync_is_default and not set(chosen) & set(XPUB_PATTERNS):
            syncs = ("none",)      # a default is never an error: xpub just has nothing to apply to
        if variants not in ("primary", "all"):
            variants = tuple(v.strip() for v in variants.split(",") if v.strip())
        return cls(chosen, parse_list(transports, TRANSPORTS, "transport"), variants,
                   parse_poll_modes(poll), syncs, parse_list(topology, TOPOLOGIES, "topology"),
                   parse_sockopts(sockopts), parse_faults(faults), bool(nowait))

    def cells(self, targets, threads: int, msgs: int, senders=()) -> tuple[Cell, ...]:
        return expand(targets, self.patterns, self.transports, poll_modes=self.polls,
                      variants=None if self.variants == "primary" else self.variants,
                      sync_modes=self.syncs, threads=threads, msgs=msgs, topologies=self.topologies,
                      senders=senders, sockopts=self.sockopts, faults=self.faults, nowait=self.nowait)


def parse_faults(value: str) -> tuple[Fault | None, ...]:
    """'none,partition:rx@1.5+2,pause:rx@1+2' -> faults (None: the cell without one)."""
    names = [n.strip() for n in (value or "none").split(",") if n.strip()]
    if not names:
        raise LabError("no faults given ('none', or e.g. partition:receiver@1.5+2)")
    return tuple(dict.fromkeys(None if n == "none" else parse_fault(n) for n in names))


def pair_topology(topology: str, sender: str | None, receiver: str | None) -> str:
    """The topology list a command line asks for: the pair flags imply containers (the default
    'threads' gives way to it; any other topology named with them is an error)."""
    if not sender and not receiver:
        return topology
    named = parse_list(topology, TOPOLOGIES, "topology")
    if named not in (("threads",), ("containers",)):
        raise LabError("%s run the pair in two containers, not --topology %s" % (PAIR_FLAGS, topology))
    return "containers"


@dataclass(frozen=True)
class SweepRequest:
    """`matrix` and `sweep-run`: cells of targets x axes, run with `settings` into OUT/<run-id>/.
    With `senders` (pair flags), every receiver of `receivers` gets each sender's pins; `targets`
    is then every pin the cells need (images, containers), receivers and senders alike."""
    targets: tuple[Target, ...]
    axes: Axes
    threads: int
    msgs: int
    settings: RunSettings
    backend: str
    out: Path
    receivers: tuple[Target, ...] = ()     # () = every target receives (no pair flags)
    senders: tuple[Target, ...] = ()       # () = each target sends to itself
    # Cells at once. More than the cores changes what a race does (load): 1 by default; a
    # deadlocked cell only waits out its stall window, which a second job puts to use.
    jobs: int = 1

    def __post_init__(self):
        check_sizes(threads=self.threads, msgs=self.msgs, jobs=self.jobs)
        check_backend(self.backend)
        for cell in self.cells:
            self.settings.check(cell)          # every cell, before anything is created

    @classmethod
    def from_cli(cls, targets: str, patterns: str, transports: str, variants: str, poll: str, sync: str,
                 threads: int, msgs: int, repeat: int, stall: float, sleep: float, backend: str, out: str,
                 inject: str | None = None, topology: str = "threads", sender_target: str | None = None,
                 receiver_target: str | None = None, jobs: int = 1, sockopts: str = "none",
                 faults: str = "none", nowait: bool = False) -> "SweepRequest":
        """The pair flags: `--sender-target A` sends from A to every target of --targets,
        `--receiver-target B` from every target to B, both: the one pair A -> B."""
        check_sizes(threads=threads, msgs=msgs, repeat=repeat)
        check_backend(backend)
        axes = Axes.from_cli(patterns, transports, variants, poll, sync,
                             sync_is_default=sync == MATRIX_DEFAULTS["sync"],
                             topology=pair_topology(topology, sender_target, receiver_target),
                             sockopts=sockopts, faults=faults, nowait=nowait)
        chosen = select(load_targets(), targets)
        receivers = senders = ()
        if sender_target or receiver_target:
            receivers = select(load_targets(), [receiver_target]) if receiver_target else chosen
            senders = select(load_targets(), [sender_target]) if sender_target else chosen
            chosen = tuple(dict.fromkeys(receivers + senders))
        check_sizes(jobs=jobs)
        return cls(chosen, axes, threads, msgs, RunSettings.from_cli(repeat, stall, sleep, inject=inject), backend,
                   check_output_dir(out, "--out"), receivers, senders, jobs)

    @classmethod
    def one_target(cls, target: str, out: str, threads: int, msgs: int, repeat: int, stall: float,
                   backend: str, inject: str | None = None, patterns: str = "all",
                   transports: str = "all") -> "SweepRequest":
        """`sweep-run`: one target's share of a CI sweep (primary variants, poll off and on)."""
        chosen = select(load_targets(), target)
        if len(chosen) != 1:
            raise LabError(f"sweep-run takes exactly one target, got {target!r}")
        return cls.from_cli(target, patterns, transports, "primary", SWEEP_DEFAULTS["poll"], "none",
                            threads, msgs, repeat, stall, 0.0, backend, out, inject)

    @cached_property
    def cells(self) -> tuple[Cell, ...]:
        return self.axes.cells(self.receivers or self.targets, self.threads, self.msgs, senders=self.senders)

    @property
    def params(self) -> dict:
        """What the results directory records of this request (matrix.json `params`)."""
        params = {"threads": self.threads, "msgs": self.msgs, "repeat": self.settings.repeat,
                  "stall": self.settings.stall, "sleep": self.settings.sleep,
                  "topology": list(self.axes.topologies)}
        if self.jobs > 1:
            params["jobs"] = self.jobs
        if self.axes.nowait:
            params["nowait"] = True
        if self.axes.sockopts != (SockOpts(),):
            params["sockopts"] = [o.label.lstrip("+") or "none" for o in self.axes.sockopts]
        if self.senders:
            params.update(senders=[t.name for t in self.senders], receivers=[t.name for t in self.receivers])
        return params


@dataclass(frozen=True)
class ScenarioRequest:
    """`scenario`: one cell of one target (the receiver's, with a `sender` of another pin), run
    `settings.repeat` times; with several topologies, that cell in each, one after the other."""
    target: Target
    cells: tuple[Cell, ...]
    settings: RunSettings
    backend: str
    json_path: Path | None
    sender: Target | None = None       # the senders' pin when not `target`

    def __post_init__(self):
        check_backend(self.backend)
        if self.json_path is not None and len(self.cells) > 1:
            raise LabError("--json holds one verdict: name one --topology (matrix writes one per cell)")
        for cell in self.cells:
            self.settings.check(cell)

    @property
    def cell(self) -> Cell:
        return self.cells[0]

    @classmethod
    def from_cli(cls, target: str, pattern: str, transport: str, variant: str, threads: int, msgs: int,
                 poll: bool, sync: str, sleep: float, stall: float, repeat: int, backend: str,
                 json: str | None, timeout: float, inject: str | None, topology: str = "threads",
                 sender_target: str | None = None, receiver_target: str | None = None,
                 sockopts: str = "none", fault: str = "none", nowait: bool = False) -> "ScenarioRequest":
        """`sockopts`: one set of socket options, as a cell's label names it ('hb100-300+immediate')."""
        names = [n.strip() for n in target.split(",")]
        if len(names) != 1 or not names[0]:
            raise LabError("--target takes one target name, got %r (matrix runs several)" % target)
        check_sizes(threads=threads, msgs=msgs, repeat=repeat)
        chosen = select(load_targets(), names)[0]
        receiver = select(load_targets(), [receiver_target])[0] if receiver_target else chosen
        sender = select(load_targets(), [sender_target])[0] if sender_target else chosen
        if (sender_target or receiver_target) and transport != "tcp":
            raise LabError("%s run the pair in two containers over tcp, not %s" % (PAIR_FLAGS, transport))
        topologies = parse_list(pair_topology(topology, sender_target, receiver_target), TOPOLOGIES, "topology")
        if len(topologies) > 1:         # as in a matrix: the topologies that can carry the transport
            topologies = tuple(t for t in topologies if transport in TOPOLOGY_TRANSPORTS[t]) or topologies
        options = parse_sockopts(sockopts)
        if len(options) != 1:
            raise LabError("--sockopts of a scenario is one set of options (join them with '+'), not %r; "
                           "matrix runs several" % sockopts)
        faults = parse_faults(fault)
        if len(faults) != 1:
            raise LabError("--fault of a scenario is one fault, not %r; matrix runs several" % fault)
        if faults[0] is not None:
            if topologies == ("threads",):
                topologies = ("containers",)    # a fault is applied to a peer's container
            elif topologies != ("containers",):
                raise LabError("--fault applies to --topology containers only")
        cells = tuple(Cell(receiver.name, pattern, transport, variant or "default", poll, sync, threads, msgs,
                           topology, sender.name if topology == "containers" else "", options[0], faults[0],
                           bool(nowait))
                      for topology in topologies)
        return cls(receiver, cells, RunSettings.from_cli(repeat, stall, sleep, timeout, inject), backend,
                   check_output_file(json, "--json") if json is not None else None,
                   sender if sender.name != receiver.name else None)


@dataclass(frozen=True)
class ReproduceRequest:
    """`reproduce`: the write-up's published configurations on `targets`; or, with `judged`,
    no run at all: the verdicts of an earlier reproduce run judged again."""
    targets: tuple[Target, ...]
    settings: RunSettings
    backend: str
    out: Path | None
    markdown: Path | None
    judged: Path | None = None
    claims: tuple = ()          # lab.reproduce.Claim: which of the write-up's configurations

    @classmethod
    def from_cli(cls, targets: str, repeat: int, stall: float, backend: str, out: str,
                 markdown: str | None, judged: str | None, sleep: float, configs: str = "all") -> "ReproduceRequest":
        from lab.reproduce import select_claims
        check_backend(backend)
        md = check_output_file(markdown, "--markdown") if markdown is not None else None
        if judged is not None:
            return cls((), RunSettings(repeat=1), backend, None, md, Path(judged))
        chosen = select(load_targets(), targets)
        # The seed's programs as they were: no socket monitors (docs/fidelity.md).
        settings = RunSettings(repeat=repeat, stall=stall, sleep=sleep, extra=("--no-monitor",))
        return cls(chosen, settings, backend, check_output_dir(out, "--out"), md, claims=select_claims(configs))


def resolve_side(arg: str) -> str:
    """compare's BASE or NEW: 'dir' for an existing path, 'target' for a pinned target name."""
    if Path(arg).exists():
        return "dir"
    if arg in {t.name for t in load_targets()}:
        return "target"
    raise LabError(f"{arg} is neither a results directory nor a pinned target")


@dataclass(frozen=True)
class PairRequest:
    """`compare` of two targets and `upgrade-check`: the same cells on BASE and NEW targets
    (`max_repeat`: add runs where the intervals overlap but the rates differ)."""
    base: str
    new: str
    axes: Axes
    threads: int
    msgs: int
    settings: RunSettings
    backend: str
    out: Path | None
    markdown: Path | None
    max_repeat: int | None = None
    run: bool = True           # False: `compare` of two results directories, nothing to run
    rolling: bool = False      # upgrade-check: also the mixed pairs FROM -> TO and TO -> FROM (containers)

    @classmethod
    def from_cli(cls, base: str, new: str, threads: int, msgs: int, repeat: int, stall: float, backend: str,
                 out: str, markdown: str | None, patterns: str = "all", transports: str = "all",
                 poll: str = "both", max_repeat: int | None = None, run: bool = True,
                 rolling: bool = False) -> "PairRequest":
        check_sizes(threads=threads, msgs=msgs, repeat=repeat, max_repeat=max_repeat)
        check_backend(backend)
        md = check_output_file(markdown, "--markdown") if markdown is not None else None
        axes = Axes.from_cli(patterns, transports, "primary", poll, "none")
        return cls(base, new, axes, threads, msgs, RunSettings.from_cli(repeat, stall, 0.0), backend,
                   check_output_dir(out, "--out") if run else None, md, max_repeat, run, rolling)

    @classmethod
    def for_compare(cls, base: str, new: str, threads: int, msgs: int, repeat: int, stall: float,
                    backend: str, out: str, markdown: str | None) -> "PairRequest":
        """`compare BASE NEW`: two results directories (nothing to run) or two targets to run first."""
        kinds = (resolve_side(base), resolve_side(new))
        if kinds[0] != kinds[1]:
            raise LabError("give two results directories or two target names, not one of each")
        return cls.from_cli(base, new, threads, msgs, repeat, stall, backend, out, markdown,
                            run=kinds == ("target", "target"))

    @property
    def params(self) -> dict:
        return {"threads": self.threads, "msgs": self.msgs, "repeat": self.settings.repeat,
                "stall": self.settings.stall, "sleep": self.settings.sleep}

    def rolling_cells(self) -> tuple[tuple[Cell, ...], tuple[Cell, ...]]:
        """A rolling upgrade's cells (containers over tcp, ROLLING_PATTERNS among the chosen
        ones), split by the results directory they belong to: BASE gets FROM -> FROM, the
        reference; NEW gets TO -> TO, FROM -> TO and TO -> FROM, what the upgrade brings."""
        if not self.rolling:
            return (), ()
        patterns = [p for p in ROLLING_PATTERNS if p in self.axes.patterns]
        base, new = self.base, self.new

        def cells(receiver: str, sender: str) -> tuple[Cell, ...]:
            return tuple(Cell(receiver, p, "tcp", threads=self.threads, msgs=self.msgs, topology="containers",
                              sender=sender) for p in patterns)
        return cells(base, base), cells(new, new) + cells(new, base) + cells(base, new)


@dataclass(frozen=True)
class InteropRequest:
    """`interop`: every ordered pair of `targets` (sender x receiver, the diagonal A -> A too: one
    pin in two containers) in the containers topology over tcp, `jobs` cells at a time."""
    targets: tuple[Target, ...]
    axes: Axes
    threads: int
    msgs: int
    settings: RunSettings
    backend: str
    out: Path
    jobs: int = 1

    def __post_init__(self):
        check_sizes(threads=self.threads, msgs=self.msgs, jobs=self.jobs)
        if self.backend == "local":
            raise LabError("interop runs every pair in two containers: it needs the docker backend, not local")
        check_backend(self.backend)
        for cell in self.cells[:1] + self.cells[-1:]:     # one shape: the first and the last say it all
            self.settings.check(cell)

    @classmethod
    def from_cli(cls, targets: str, patterns: str, sync: str, poll: str, threads: int, msgs: int, repeat: int,
                 stall: float, sleep: float, backend: str, out: str, jobs: int) -> "InteropRequest":
        """`targets` 'all' means every pin that can be built here (a broken one named is skipped
        with its reason, as in a matrix)."""
        check_sizes(threads=threads, msgs=msgs, repeat=repeat, jobs=jobs)
        check_backend(backend)
        chosen = select(load_targets(), targets)
        if targets.strip() == "all":
            chosen = tuple(t for t in chosen if not t.broken)
        axes = Axes.from_cli(patterns, "tcp", "primary", poll, sync,
                             sync_is_default=sync == INTEROP_DEFAULTS["sync"], topology="containers")
        return cls(chosen, axes, threads, msgs, RunSettings.from_cli(repeat, stall, sleep), backend,
                   check_output_dir(out, "--out"), jobs)

    @cached_property
    def cells(self) -> tuple[Cell, ...]:
        """Receiver-major (its row of the matrix), each receiver with every sender in pin order."""
        return self.axes.cells(self.targets, self.threads, self.msgs, senders=self.targets)

    @property
    def params(self) -> dict:
        return {"threads": self.threads, "msgs": self.msgs, "repeat": self.settings.repeat,
                "stall": self.settings.stall, "sleep": self.settings.sleep, "topology": ["containers"],
                "interop": [t.name for t in self.targets], "jobs": self.jobs}
