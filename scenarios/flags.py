"""The scenario programs' catalog and flags: pure (no zmq), so the lab validates a cell's
argv and describes a run exactly as the harness would, without pyzmq on the host.

Adding a pattern: a module scenarios/<name>.py with its socket code, plus its name here.
"""
from __future__ import annotations

import argparse
import math
import re

from scenarios.options import OptionError, from_args

# The first five mirror the original programs (WallStProg/zmqtests threads/: pairs.cpp,
# pubsub.cpp, pushpull.cpp, clientserver.cpp; routerdealer is the write-up's "should work like
# PUSH/PULL" left untried); then the other thread-safe draft socket pairs; reqrep (REQ/REP, not in
# the originals) last, so every older order stays.
PATTERNS = ("pair", "pubsub", "pushpull", "clientserver", "routerdealer",
            "scattergather", "radiodish", "peer", "channel", "reqrep")
TRANSPORTS = ("inproc", "ipc", "tcp")
SYNC_MODES = ("none", "xpub")
# The first variant of a pattern is its primary one.
# Thread-safe (draft) sockets: one socket made by the main program shared by every control
# thread (as clientserver.cpp does), or one per thread.
THREAD_SAFE = ("clientserver", "scattergather", "radiodish", "peer", "channel")
VARIANTS = {p: ("shared", "per-thread") for p in THREAD_SAFE}
# pub-binds: each sender thread's PUB binds and the receiver's SUB connects to them all: the
# layout of libzmq#916 (a SUB reconnecting to a restarted, bound PUB resends its subscription).
# Not the originals' (their SUB binds): only the lab's containers topology gives each side its
# own address and fixed ports (--sender-bind / --sender-at).
VARIANTS["pubsub"] = ("default", "pub-binds")
RECEIVER_CONNECTS = ("pub-binds",)      # variants in which the receiver connects and senders bind
# The originals' defaults (threads/common.h): what `python -m scenarios` does with no flags.
SEED_SLEEP_S = 1.0          # sleepDuration: seconds between the senders' end and the shutdown
SEED_LINGER_MS = 30000      # linger: ZMQ_LINGER on every socket createSocket() makes
INJECT_KINDS = ("drop", "dup", "swap", "block-sender", "raise", "freeze")
# Where the two sides run (docs/topology.md): threads of one process (the seed's setting),
# two processes (this program starts both), or two containers (the lab's Docker backend
# starts each side with --role). inproc cannot cross a process; containers talk tcp only.
TOPOLOGIES = ("threads", "processes", "containers")
ROLES = ("receiver", "sender")
TOPOLOGY_TRANSPORTS = {"threads": TRANSPORTS, "processes": ("ipc", "tcp"), "containers": ("tcp",)}


def variants(pattern):
    return VARIANTS.get(pattern, ("default",))


class FlagError(ValueError):
    """A bad flag: the harness prints usage and exits 2; the lab raises a one-line error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FlagError(message)


def _parser():
    p = _Parser(prog="python -m scenarios",
                description="One run of an inter-thread signalling scenario; prints one JSON report.")
    p.add_argument("--pattern", required=True, choices=PATTERNS)
    p.add_argument("--variant", default=None, help="pattern variant (clientserver: shared, per-thread)")
    p.add_argument("--transport", default="inproc", choices=TRANSPORTS)
    p.add_argument("--threads", type=int, default=10, help="control threads (default 10)")
    p.add_argument("--msgs", type=int, default=1000, help="pings per control thread (default 1000)")
    p.add_argument("--poll", action="store_true",
                   help="as the originals' -poll: zmq_poll(POLLIN, 1 ms) on the sending socket after "
                        "connect, and after every send where the pattern's original did (pubsub, pushpull)")
    p.add_argument("--sync", default="none", choices=SYNC_MODES,
                   help="pubsub: each sender is an XPUB that waits for the subscription first")
    p.add_argument("--sleep", type=float, default=SEED_SLEEP_S,
                   help="seconds to wait after the senders finish, before the shutdown message "
                        "(default 1, as the originals' -sleep; the lab's drain counts, so 0 is safe)")
    p.add_argument("--stall", type=float, default=2.0, help="seconds without progress that end a run (default 2)")
    p.add_argument("--linger", type=int, default=SEED_LINGER_MS,
                   help="ZMQ_LINGER (ms, -1 = forever) on every socket (default 30000, as the originals' -linger)")
    p.add_argument("--rate", type=float, default=0.0, help="sends per second per thread (0: unlimited)")
    p.add_argument("--mutex", action="store_true", help="pair: serialise connect/send/disconnect across threads")
    p.add_argument("--nowait", action="store_true",
                   help="non-blocking sends: a send refused with EAGAIN is counted as refused, not lost")
    # Socket options that matter under faults (scenarios/options.py: their meaning, per
    # zmq_setsockopt(3), and which socket gets which).
    p.add_argument("--heartbeat", default=None, metavar="IVL[:TIMEOUT[:TTL]]",
                   help="ZMQ_HEARTBEAT_IVL[/TIMEOUT[/TTL]] in ms on every pattern socket (libzmq >= 4.2; ipc, tcp)")
    p.add_argument("--immediate", action="store_true",
                   help="ZMQ_IMMEDIATE=1 on the connecting sockets: queue only to completed connections (ipc, tcp)")
    p.add_argument("--reconnect-ivl", type=int, default=None, metavar="MS",
                   help="ZMQ_RECONNECT_IVL on the connecting sockets (-1: never reconnect; ipc, tcp)")
    p.add_argument("--hwm", type=int, default=None, metavar="N",
                   help="ZMQ_SNDHWM and ZMQ_RCVHWM on every pattern socket (0: no limit)")
    p.add_argument("--sndbuf", type=int, default=None, metavar="BYTES",
                   help="ZMQ_SNDBUF (SO_SNDBUF) on every pattern socket (tcp)")
    p.add_argument("--rcvbuf", type=int, default=None, metavar="BYTES",
                   help="ZMQ_RCVBUF (SO_RCVBUF) on every pattern socket (tcp)")
    p.add_argument("--xpub-nodrop", action="store_true",
                   help="pubsub --sync xpub: ZMQ_XPUB_NODROP=1 on the senders' XPUBs (a send at the HWM "
                        "fails with EAGAIN: refused under --nowait, else it blocks)")
    p.add_argument("--inject", default=None,
                   help="TEST ONLY fault: drop:[T:]K, dup:[T:]K, swap:[T:]K, block-sender[:T], raise[:T], freeze")
    p.add_argument("--topology", default="threads", choices=TOPOLOGIES,
                   help="threads (default): one process; processes: a receiver and a sender process "
                        "(this program starts both); containers: set by the lab, with --role")
    p.add_argument("--role", default=None, choices=ROLES,
                   help="run one side only (processes/containers): the receiver (main loop) or the sender (control threads)")
    p.add_argument("--bind", default=None, help="receiver: where the pattern's socket binds (default: the transport's own)")
    p.add_argument("--report-bind", default="tcp://127.0.0.1:*",
                   help="receiver: where the senders' report channel (ROUTER) binds")
    p.add_argument("--announce", action="store_true",
                   help='receiver: first stdout line {"ready": {"bind": EP, "report": EP}} once bound')
    p.add_argument("--incarnations", type=int, default=1, metavar="N",
                   help="receiver: sender processes to expect one after another, each starting when the "
                        "one before was killed (default 1; the sender takes the same argv and ignores it)")
    p.add_argument("--incarnation", type=int, default=1, metavar="K",
                   help="sender: which of the --incarnations this process is (default 1); receiver: "
                        "K > 1 is a receiver started in place of a killed one: it replays --journal first")
    p.add_argument("--journal", default=None, metavar="PATH",
                   help="receiver: append every message it takes to PATH (scenarios/journal.py), for "
                        "the receiver the lab starts in its place after a kill; a sender ignores it")
    p.add_argument("--connect", default=None, help="sender: the receiver's pattern endpoint")
    p.add_argument("--sender-bind", default=None, metavar="tcp://ADDR:PORT",
                   help="sender, --variant pub-binds: thread t binds its socket at PORT + t, the "
                        "shutdown's at PORT + threads")
    p.add_argument("--sender-at", default=None, metavar="tcp://HOST:PORT",
                   help="receiver, --variant pub-binds: where the sender binds (PORT + t as above)")
    p.add_argument("--report", default=None, help="sender: the receiver's report channel endpoint")
    p.add_argument("--no-monitor", dest="monitor", action="store_false",
                   help="no socket-monitor events in the timeline (reproduce runs the seed's programs without them)")
    p.add_argument("--audit-drain", action="store_true",
                   help="after the drain window's verdict, keep listening for the stall window and "
                        "report how many pings would have come too late for it (drain.audit.late)")
    p.add_argument("--ping-log", action="store_true",
                   help="report every ping's send and receive time (report 'pings'): what a fault's "
                        "window is judged on (lab/fault_verdicts.py)")
    p.add_argument("--mark-after", type=int, default=0,
                   help="receiver: tell the lab (a state line on stderr) when the K-th ping arrived "
                        "(a fault scheduled after K pings)")
    p.add_argument("--full-drain", action="store_true",
                   help="after every sender's final count is known, wait the whole stall window for "
                        "stragglers rather than the latency-derived drain window (fault runs)")
    p.add_argument("--debug", action="store_true", help="verbose progress on stderr")
    p.add_argument("--quiet", action="store_true", help="nothing on stderr but errors")
    return p


def parse(argv):
    """Parsed and cross-checked flags; FlagError (one line) for anything off."""
    args = _parser().parse_args(argv)
    for name in ("threads", "msgs"):
        if getattr(args, name) < 1:
            raise FlagError("--%s must be at least 1" % name)
    for name in ("stall", "sleep", "rate"):
        if not math.isfinite(getattr(args, name)):
            raise FlagError("--%s must be a finite number" % name)
    if args.mark_after < 0 or args.mark_after > args.threads * args.msgs:
        raise FlagError("--mark-after must be between 0 (none) and threads x msgs")
    if args.stall <= 0 or args.sleep < 0 or args.rate < 0:
        raise FlagError("--stall must be > 0, --sleep and --rate >= 0")
    if args.rate and 1.0 / args.rate >= args.stall:
        raise FlagError("--stall must be longer than the pause between sends (1 / --rate)")
    if args.linger < -1:
        raise FlagError("--linger must be -1 (forever) or more")
    if args.sync != "none" and args.pattern != "pubsub":
        raise FlagError("--sync xpub applies to --pattern pubsub only")
    if args.mutex and args.pattern != "pair":
        raise FlagError("--mutex applies to --pattern pair only")
    own = variants(args.pattern)
    args.variant = args.variant or own[0]
    if args.variant not in own:
        raise FlagError("--variant for %s must be one of %s" % (args.pattern, ", ".join(own)))
    args.fault = parse_inject(args.inject, args.threads, args.msgs)
    try:
        args.sockopts = from_args(args)
    except OptionError as exc:
        raise FlagError(str(exc)) from None
    problem = args.sockopts.check(args.pattern, args.transport, args.sync)
    if problem:
        raise FlagError(problem)
    check_topology(args)
    return args


def check_topology(args):
    if args.transport not in TOPOLOGY_TRANSPORTS[args.topology]:
        raise FlagError("--topology %s needs --transport %s (inproc cannot cross a process)"
                        % (args.topology, " or ".join(TOPOLOGY_TRANSPORTS[args.topology])))
    if args.topology == "containers" and not args.role:
        raise FlagError("--topology containers is started by the lab, one --role per container")
    if args.role == "sender" and not (args.connect and args.report):
        raise FlagError("--role sender needs --connect and --report")
    if args.variant in RECEIVER_CONNECTS:
        want = {"sender": "--sender-bind", "receiver": "--sender-at"}.get(args.role)
        if want is None:
            raise FlagError("--variant %s needs --topology containers and --role (the lab gives "
                            "each side its address)" % args.variant)
        value = args.sender_bind if args.role == "sender" else args.sender_at
        if not value or not re.fullmatch(r"tcp://[^:/]+:\d+", value) or \
                int(value.rsplit(":", 1)[1]) + args.threads > 65535:
            raise FlagError("--variant %s needs %s tcp://HOST:PORT (PORT + threads at most 65535)"
                            % (args.variant, want))
    elif args.sender_bind or args.sender_at:
        raise FlagError("--sender-bind and --sender-at are for --variant %s" % ", ".join(RECEIVER_CONNECTS))
    if args.role != "sender" and (args.connect or args.report):
        raise FlagError("--connect and --report are for --role sender")
    if args.role != "receiver" and (args.bind or args.announce):
        raise FlagError("--bind and --announce are for --role receiver")
    if args.role and args.topology == "threads":
        raise FlagError("--role needs --topology processes or containers")
    # Sender processes one after another (a sender killed and started again): only the lab,
    # starting each role itself, can start the next one, so both flags need --role.
    if args.incarnations < 1 or args.incarnation < 1:
        raise FlagError("--incarnations and --incarnation must be at least 1")
    if args.incarnations > 1 and not args.role:
        raise FlagError("--incarnations needs --role (the lab starts each sender process itself)")
    if args.incarnation > 1 and args.role not in ("sender", "receiver"):
        raise FlagError("--incarnation is for --role sender or receiver")
    # A receiver started again after a kill (kill:receiver): what the killed one took is only
    # in its journal; without it every earlier ping would be called lost.
    if args.incarnation > 1 and args.role == "receiver" and not args.journal:
        raise FlagError("--incarnation for --role receiver needs --journal (what the killed receiver took)")
    if args.role == "sender" and args.incarnation > args.incarnations:
        raise FlagError("--incarnation %d is past --incarnations %d" % (args.incarnation, args.incarnations))



def parse_inject(spec, threads, msgs):
    """'drop:5' -> ('drop', 0, 5); 'drop:3:5' -> ('drop', 3, 5); 'block-sender' -> ('block-sender', 0, 1)."""
    if not spec:
        return None
    parts = spec.split(":")
    kind, nums = parts[0], [int(x) for x in parts[1:] if x.isdigit()]
    if kind not in INJECT_KINDS or len(nums) != len(parts) - 1:
        raise FlagError("unknown --inject %r" % spec)
    if kind in ("drop", "dup", "swap"):
        if len(nums) not in (1, 2):
            raise FlagError("--inject %s needs [T:]K" % kind)
        tid, seq = (0, nums[0]) if len(nums) == 1 else nums
    else:
        tid, seq = (nums[0] if nums else 0), 1
    if not (0 <= tid < threads and 1 <= seq <= msgs - (kind == "swap")):
        raise FlagError("--inject %s is outside the run's threads/msgs" % spec)
    return kind, tid, seq


def params(args):
    """The parameters a run report states (the lab uses this for runs it classifies itself).
    `sockopts` only when some are set: a run without them states exactly what it always did."""
    params = {"pattern": args.pattern, "transport": args.transport, "threads": args.threads,
            "msgs": args.msgs, "poll": args.poll, "sync": args.sync, "variant": args.variant,
            "sleep": args.sleep, "stall": args.stall,
            "linger": args.linger, "rate": args.rate,
            "mutex": args.mutex, "nowait": args.nowait, "inject": args.inject,
            "topology": args.topology}
    sockopts = getattr(args, "sockopts", None)
    if sockopts:
        params["sockopts"] = sockopts.to_dict()
    if getattr(args, "ping_log", False):
        params["ping_log"] = True
    if getattr(args, "full_drain", False):
        params["full_drain"] = True
    if getattr(args, "mark_after", 0):
        params["mark_after"] = args.mark_after
    for name in ("incarnations", "incarnation"):     # only when not 1: older runs stay as they were
        if getattr(args, name, 1) != 1:
            params[name] = getattr(args, name)
    return params
