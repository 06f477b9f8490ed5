"""The one scenario harness: flags, control threads, the poll loop, sequence checks, the
watchdog and the JSON report. A pattern module (pair.py, pubsub.py, ...) holds only its
socket code: open_receiver(ctx) and open_sender(ctl, ctx, endpoint, shared); and where it
differs from the default: unsupported(variant) (default: supported), open_shared(ctl, ctx,
endpoint, variant) (a socket every control thread shares; default none), recv(sock) (default:
one frame, non-blocking), reply(sock, msg) (the main loop's answer right after it took a
message, reqrep; default none) and send(ctl, sock, endpoint, payload) (default: ctl.send). Its
name and variants are listed in flags.py.

Shape of a run, as in the reference write-up: a "main loop" thread binds a control and a
data socket and polls both; N control threads each own a sending socket and send M pings
(thread id, seq); when they are done, a shutdown message carrying every thread's sent count
goes over the control channel, and the main loop drains until all of it is in or nothing has
moved for the stall window. A watchdog ends a run that stops moving (stacks dumped,
classified, reported) even while threads are stuck inside libzmq.
"""
from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import platform
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback

import zmq

from scenarios import flags, incarnations, journal, roles
from scenarios import timeline as timeline_mod
from scenarios.evidence import Tally, classify, thread_rows, totals
from scenarios.monitor import Monitor

# b"P", thread id, sequence number, send time (time.time_ns() on the receiver's clock): the
# receiver's one-way latency, which sizes the drain window (docs/topology.md). 17 bytes; the
# originals' ping was 24.
PING = struct.Struct("!cIIQ")
SHUTDOWN = b"S"                       # followed by JSON {"expected": [completed per thread]}
WATCHDOG_TICK = 0.05                  # seconds: classification lands within stall + this
SEND_TIMES = 64                       # send times kept per thread for the timeline (seq 1..64)
# The drain after every sender's final count is known: nothing new for this long means lost.
DRAIN_FLOOR_S, DRAIN_LATENCIES, LATENCY_DECAY = 0.1, 4.0, 0.98
LOOP_TICK_MS = 50                     # the main loop re-checks the drain this often when idle
UP_EVENTS = ("CONNECTED", "HANDSHAKE_SUCCEEDED")
# ZMQ_TYPE value -> name, for the socket options that apply to one type (XPUB_NODROP).
SOCKET_TYPES = {getattr(zmq, n): n for n in ("PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL",
                                             "PUSH", "XPUB", "XSUB") if hasattr(zmq, n)}
# The lab runs more scenarios at once than it has cores only while the extra ones wait: a run
# whose receiver has seen no progress for IDLE_AFTER_S says so on stderr (a whole line), and
# says when it moves again (lab/slots.py). A deadlocked run waits out its stall window idle.
# Only when the lab asks (this variable set): a person running the program sees no such lines.
IDLE_AFTER_S = 0.25
STATE_ENV = "ZMQLAB_RUN_STATE"
STATE_LINE = "zmqlab-run-state: %s\n"


def parse_args(argv=None):
    try:
        args = flags.parse(argv)
    except flags.FlagError as exc:
        sys.stderr.write("python -m scenarios: error: %s\n" % exc)
        sys.exit(2)
    return args, importlib.import_module("scenarios." + args.pattern)


class SenderRecord:
    """One control thread's own account: how far it got and where it is now. `completed`
    counts sends that returned; `refused` the seqs a non-blocking send gave up on."""
    __slots__ = ("id", "attempted", "completed", "refused", "state", "connect_ns", "send_ns", "last_send_ns")

    def __init__(self, tid, state="not-started"):
        self.id, self.attempted, self.completed, self.state = tid, 0, 0, state
        self.refused = set()
        self.connect_ns = self.last_send_ns = None
        self.send_ns = []                 # send times of seq 1..SEND_TIMES

    def as_dict(self):
        return {"id": self.id, "attempted": self.attempted, "completed": self.completed,
                "would_block": len(self.refused), "state": self.state}

    def account(self):
        """What a sender process tells the receiver about this thread (times already on the
        receiver's clock: the sender adds the offset it measured)."""
        return dict(self.as_dict(), refused=sorted(self.refused), connect_ns=self.connect_ns,
                    send_ns=self.send_ns, last_send_ns=self.last_send_ns)

    def take_account(self, acc):
        self.attempted, self.completed, self.state = acc["attempted"], acc["completed"], acc["state"]
        self.refused.update(acc.get("refused", ()))
        self.connect_ns, self.send_ns, self.last_send_ns = acc.get("connect_ns"), acc.get("send_ns") or [], acc.get("last_send_ns")


class Ctl:
    """What a pattern's sender code may call: each zmq call goes through `step`, so the
    watchdog always knows which call a stuck thread is in."""

    def __init__(self, run, record, blocking=False):
        self.run, self.record, self.sync, self.variant = run, record, run.args.sync, run.args.variant
        # --poll is the originals' -poll: zmq_poll for POLLIN, 1 ms, on the *sending* socket.
        # Nothing ever arrives there, so each call waits its millisecond while libzmq runs the
        # socket's pending commands (the libzmq#2267 work-around). pubsub.cpp and pushpull.cpp
        # poll after connect and after every send; pairs.cpp and clientserver.cpp after connect
        # only; a pattern says which with POLL_AFTER_SEND.
        self.poll_after_connect = run.args.poll
        self.poll_after_send = run.args.poll and getattr(run.pattern, "POLL_AFTER_SEND", False)
        # --nowait is for the pings; the shutdown message always blocks (blocking=True).
        self.flags = zmq.NOBLOCK if run.args.nowait and not blocking else 0
        self.owned = []

    def step(self, state, fn, *args):
        self.record.state = state
        result = fn(*args)
        self.record.state = "running"
        self.run.progress()
        return result

    def socket(self, ctx, kind):
        sock = self.run.socket(kind)
        self.run.monitor.watch(sock, self.record.id if self.record.id >= 0 else None)
        self.owned.append(sock)
        return sock

    def connect(self, sock, endpoint):
        if self.record.connect_ns is None:
            self.record.connect_ns = time.time_ns()
        self.step("connect", sock.connect, endpoint)
        if self.poll_after_connect:
            self.step("poll", sock.poll, 1, zmq.POLLIN)

    def bind_own(self, sock):
        """--variant pub-binds: this thread's socket binds at --sender-bind's PORT + its thread
        id (the shutdown's at PORT + threads), where the receiver's SUB connects to it; a
        restarted sender binds the same ports again."""
        args = self.run.args
        host, port = args.sender_bind.rsplit(":", 1)
        offset = self.record.id % args.threads if self.record.id >= 0 else args.threads
        if self.record.connect_ns is None:
            self.record.connect_ns = time.time_ns()
        self.step("bind", sock.bind, "%s:%d" % (host, int(port) + offset))

    def send(self, sock, payload, **kw):
        """One ping: refused (EAGAIN under --nowait) is recorded, never raised. `kw` carries a
        draft socket's group= or routing_id=."""
        # The hot path: step() inlined, since every ping of every thread passes here.
        record = self.record
        record.state = "send"
        try:
            sock.send(payload, self.flags, **kw)
        except zmq.Again:
            record.refused.add(record.attempted)
        record.state = "running"
        self.run.last_progress = time.monotonic()
        if self.poll_after_send:
            self.step("poll", sock.poll, 1, zmq.POLLIN)

    @contextlib.contextmanager
    def serialised(self):
        """--mutex: one connect/send/disconnect sequence at a time across all threads."""
        if not self.run.args.mutex:
            yield
            return
        self.record.state = "wait-mutex"
        with self.run.pair_lock:
            self.record.state = "running"
            yield

    def close_owned(self):
        self.run.monitor.settle(self.record.id if self.record.id >= 0 else None)
        self.record.state = "close"
        for sock in self.owned:
            sock.close()
        self.record.state = "done"


class Run:
    def __init__(self, args, pattern):
        self.args, self.pattern = args, pattern
        self.role = args.role or "all"          # all: both sides in this process (threads)
        self.ctx = zmq.Context()
        self.started = self.last_progress = time.monotonic()
        # A receiver knows its senders only from their accounts: until one arrives, a thread
        # is "no-account" (a sender that never gives one is as stuck as one inside a send).
        first = "no-account" if self.role == "receiver" else "not-started"
        # A receiver of --incarnations N keeps a record per thread of each sender process; a
        # sender's threads are numbered from its incarnation's base (scenarios/incarnations.py).
        self.incarnations = args.incarnations if self.role == "receiver" else 1
        self.current = 1                        # receiver: the latest incarnation that said hello
        self.hellos = {}                        # receiver: incarnation -> its hello (host, pid)
        self.killed = False                     # receiver: some record is an incarnation's killed one
        base = (args.incarnation - 1) * args.threads if self.role == "sender" else 0
        records = args.threads * self.incarnations
        self.senders = [SenderRecord(base + i, first) for i in range(records)]
        self.tallies = [Tally(refused=s.refused) for s in self.senders]
        self.shutdown = SenderRecord(-1, first)
        self.shutdown_received = False
        self.sleeping = False
        self.idle = False                       # what announce_idle() last said
        self.pings_in = 0                       # pings taken, for --mark-after
        self.journal = None                     # receiver --journal: a journal.Writer
        self.receiver_restarts = []             # receiver --incarnation > 1: what it took over
        self.expected = None
        self.data_received = 0
        self.bound = threading.Event()
        self.pair_lock = threading.Lock()
        self.emit_lock = threading.Lock()
        self.tmpdir = None
        self.control_ep = None
        self.fault_hold = threading.Event()     # never set: a blocked sender waits on it
        self.monitor = Monitor("receiver" if self.role == "receiver" else "sender", args.monitor)
        self.offset_ns = 0                      # sender role: add to time_ns() for the receiver's clock
        self.t0_ns = time.time_ns()             # reset when the receiver has bound
        # Receive side of the timeline and the latency that sizes the drain window.
        self.first_recv = [None] * records          # (time_ns, seq)
        self.last_recv_ns = [None] * records
        # --ping-log: every ping's receive time (None: never), for a fault window's verdict
        self.recv_log = [[None] * args.msgs for _ in range(records)] if args.ping_log else None
        # ... and, with incarnations, the send time each ping carries: a killed process gives no
        # account, so the pings that arrived are all there is of its send times
        self.sent_log = [[None] * args.msgs for _ in range(records)] \
            if args.ping_log and self.incarnations > 1 else None
        self.latency_recent = self.latency_max = 0
        # Every sender's final counts known through a reliable channel: monotonic time, or None.
        self.final_at = None
        self.peers = []                         # receiver role: one entry per sender process
        self.stalled_peer = None                # a sender's stalled account (stacks): a deadlock
        self.drain = None
        self.audit = None

    def progress(self):
        self.last_progress = time.monotonic()

    def socket(self, kind, side="sender"):
        """Every socket as the originals' createSocket(): ZMQ_LINGER set (default 30000 ms);
        and the run's socket options for a pattern socket: a sender's (every socket a Ctl
        makes) unless `side` says otherwise (None: the data socket, no options)."""
        sock = self.ctx.socket(kind)
        self.configure(sock, side)
        return sock

    def configure(self, sock, side=None):
        """ZMQ_LINGER, and on a pattern socket the --heartbeat/--immediate/--reconnect-ivl/--hwm/
        --xpub-nodrop options (scenarios/options.py: which side gets which, and why). Before
        any bind or connect: libzmq reads most of them when a connection is made."""
        sock.setsockopt(zmq.LINGER, self.args.linger)
        if side and self.args.sockopts:
            kind = SOCKET_TYPES.get(sock.getsockopt(zmq.TYPE), "")
            for name, value in self.args.sockopts.settings(kind, side):
                sock.setsockopt(getattr(zmq, name), value)

    def debug(self, msg):
        if self.args.debug:
            sys.stderr.write("[%.3f] %s\n" % (time.monotonic() - self.started, msg))

    # --- the report --------------------------------------------------------------------
    def emit(self, classified_by, stalled=False, error=None, unsupported=None):
        """Classify, print the one JSON report, clean up, and end the process. First caller wins."""
        if not self.emit_lock.acquire(blocking=False):
            return
        if self.role == "sender":
            roles.finish_sender(self, stalled, error, unsupported)      # ends the process
        now = time.monotonic()
        self.settle_killed()
        many = self.incarnations > 1
        senders = [s.as_dict() for s in self.senders]
        rows = thread_rows(senders, self.tallies)
        if many:
            rows = incarnations.rows(rows, self.args.threads)
        outcome, reason = classify(rows, self.shutdown_received, stalled, self.shutdown.state,
                                   error=error, unsupported=unsupported)
        refused = sum(len(s.refused) for s in self.senders)
        if refused:
            reason += "; %d sends refused with EAGAIN at the sender (--nowait), not counted as lost" % refused
        stall = None
        if stalled:
            stall = {"since_progress_s": round(now - self.last_progress, 3), "stacks": stacks()}
            if self.stalled_peer is not None:       # the stuck threads are in the sender's process
                peer = self.stalled_peer
                stall["stacks"] = dict(("sender: " + k, v) for k, v in peer["stacks"].items())
                transit = max(0.0, (time.time_ns() - peer["sent_ns"]) / 1e9)
                stall["since_progress_s"] = round(peer["since_progress_s"] + transit, 3)
            elif self.role == "receiver":           # a silent sender: this side's stacks tell nothing
                stall["stacks"] = {}
        timeline = self.timeline(rows) if not unsupported else None
        if timeline and many:
            timeline = incarnations.timeline(timeline, self.args.threads)
            explained = incarnations.explain(timeline_mod.explain, timeline, rows, self.incarnations,
                                             pattern=self.args.pattern, transport=self.args.transport)
        else:
            explained = timeline_mod.explain(timeline, rows, pattern=self.args.pattern,
                                             transport=self.args.transport) if timeline else []
        if explained and outcome == "lost":
            reason += "; " + explained[0]
        duration = now - self.started
        report = {
            "schema": "zmqlab.run/1",
            "versions": versions(),
            "params": flags.params(self.args),
            "outcome": outcome, "reason": reason, "classified_by": classified_by,
            "threads": rows,
            "totals": totals(rows, incarnations.expected_total(senders, self.args.threads, self.args.msgs, self.current)
                             if many else self.args.threads * self.args.msgs),
            "shutdown_received": self.shutdown_received,
            "duration_s": round(duration, 4),
            "msgs_per_s": round(sum(t.received for t in self.tallies) / duration, 1) if duration > 0 else 0.0,
            "stall": stall,
            "error": error,
            "topology": self.args.topology,
        }
        if self.role == "receiver":
            # a peer's events are in the timeline, not twice in the report
            report["peers"] = [{k: v for k, v in p.items() if k != "events"} for p in self.peers] \
                or [{"role": "sender", "account": "none"}]
            if many:
                report["peers"] = incarnations.peers(report["peers"] if self.peers else [], self.hellos,
                                                     self.current, self.incarnations)
        if self.receiver_restarts:
            report["receiver_restarts"] = self.receiver_restarts
        if self.drain:
            report["drain"] = dict(self.drain, **(self.audit or {}))
        if timeline:
            report["timeline"] = timeline
            report["explain"] = explained
        if self.recv_log is not None:
            report["pings"] = self.ping_log()
        try:
            # os.write, not sys.stdout: a reader that went away (EPIPE) must not leave this
            # thread holding emit_lock with the process alive forever.
            write_all(1, (json.dumps(report) + "\n").encode())
            if not self.args.quiet:
                write_all(2, ("%s: %s\n" % (outcome, reason)).encode())
        except OSError:
            pass
        finally:
            self.cleanup()
            # Threads may be stuck inside libzmq forever; nothing can join them, so leave now.
            os._exit(0)

    def ping_log(self):
        """Every ping's send time (from its sender's account, already on this clock) and
        receive time, per thread: seq k at index k - 1, None where there is none."""
        msgs = self.args.msgs
        if self.incarnations > 1:
            return {"clock": "receiver, CLOCK_REALTIME ns", "threads": self.incarnation_pings()}
        return {"clock": "receiver, CLOCK_REALTIME ns",
                "threads": [_refused({"id": s.id, "sent_ns": (s.send_ns + [None] * msgs)[:msgs], "recv_ns": recv}, s)
                            for s, recv in zip(self.senders, self.recv_log)]}

    def incarnation_pings(self):
        """The ping log of --incarnations N: an entry per record, as (thread id, incarnation). A
        killed incarnation's send times are those its arrived pings carried (see
        incarnations.killed_sent: gaps get an upper bound, listed under sent_upper_bound)."""
        msgs, out = self.args.msgs, []
        for s, tally, recv, carried in zip(self.senders, self.tallies, self.recv_log, self.sent_log):
            tid, k = incarnations.of(s.id, self.args.threads)
            entry = {"id": tid, "incarnation": k}
            if s.state == incarnations.KILLED:
                sent, bound = incarnations.killed_sent(carried, incarnations.highest_seq(tally.next_expected))
                entry.update(sent_ns=sent, recv_ns=recv, sent_upper_bound=bound)
            else:
                entry.update(sent_ns=(s.send_ns + [None] * msgs)[:msgs], recv_ns=recv)
                _refused(entry, s)
            out.append(entry)
        return out

    def settle_killed(self):
        """A killed thread sent up to the highest seq that arrived, as far as anyone can know."""
        if not self.killed:
            return
        for s, tally in zip(self.senders, self.tallies):
            if s.state == incarnations.KILLED:
                s.attempted = s.completed = incarnations.highest_seq(tally.next_expected)

    def timeline(self, rows):
        """The run's timeline (docs/topology.md): ms since the receiver bound, on its clock."""
        ms = lambda ns: None if ns is None else round((ns - self.t0_ns) / 1e6, 3)  # noqa: E731
        threads = []
        for s, first, last in zip(self.senders, self.first_recv, self.last_recv_ns):
            threads.append({"id": s.id, "connect_ms": ms(s.connect_ns),
                            "first_send_ms": ms(s.send_ns[0]) if s.send_ns else None,
                            "last_send_ms": ms(s.last_send_ns), "send_ms": [ms(t) for t in s.send_ns[:SEND_TIMES]],
                            "first_recv_ms": ms(first[0]) if first else None,
                            "first_recv_seq": first[1] if first else None, "last_recv_ms": ms(last)})
        events = sorted(({k: v for k, v in e.items() if k != "t_ns"} | {"t_ms": ms(e["t_ns"])}
                         for e in self.events()), key=lambda e: e["t_ms"])
        align = None
        if self.peers and self.peers[0].get("clock"):
            align = dict(self.peers[0]["clock"], method="NTP-style over the report channel: the best of "
                         "%d exchanges (offset = t2 - (t1 + t3) / 2, error <= round trip / 2)" % roles.CLOCK_EXCHANGES)
        timeline = {"clock": "CLOCK_REALTIME, ms since t0 (the receiver bound)", "t0_ns": self.t0_ns,
                    "align": align, "monitor": "on" if self.monitor.on else self.monitor.why_not,
                    "collector_delay_ms": round(self.monitor.max_pass_ms, 3),
                    "events_dropped": self.monitor.dropped,
                    "threads": threads, "events": events}
        timeline["unseen"] = timeline_mod.unseen(timeline, self.args.transport) if self.monitor.on else []
        timeline["monitor_lag_ms"] = monitor_lag(threads, events)
        return timeline

    def fail(self, where, exc):
        self.debug(traceback.format_exc())
        self.emit("harness", error="%s: %s: %s" % (where, type(exc).__name__, exc))

    def cleanup(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # --- the threads ---------------------------------------------------------------------
    def endpoint(self):
        """The control endpoint on --transport (the originals: always inproc://control)."""
        t = self.args.transport
        if t == "inproc":
            return "inproc://zmqlab-control"
        if t == "ipc":
            self.tmpdir = tempfile.mkdtemp(prefix="zmqlab-")
            return "ipc://%s/control" % self.tmpdir
        return "tcp://127.0.0.1:*"          # a port picked by the OS, never fixed

    def main_loop(self):
        """The originals' mainLoop(): zmq_poll on control and data, then ONE message from the
        first ready socket, and poll again. One message per poll matters: a receiving socket
        runs its pending commands (new pipes, the SUB's subscription to a new PUB) on entry
        to zmq_poll, so batching receives would change how soon a new sender is attached.
        A receiver role also polls its report channel (the senders' hellos and accounts)."""
        try:
            control = self.pattern.open_receiver(self.ctx)
            self.configure(control, "receiver")
            self.monitor.watch(control, None, "receiver", cap=4 * self.args.threads + 16)
            # The originals' data socket: a SUB bound on tcp loopback that nobody feeds (their
            # fixed port 5101 becomes a port the OS picks, so parallel runs never collide).
            data = self.socket(zmq.SUB, side=None)
            if self.args.variant in flags.RECEIVER_CONNECTS:
                # the senders bind (--sender-at PORT + t, the shutdown's PORT + threads): connect
                # to each now; libzmq retries every ZMQ_RECONNECT_IVL until it is there
                host, port = self.args.sender_at.rsplit(":", 1)
                for offset in range(self.args.threads + 1):
                    control.connect("%s:%d" % (host, int(port) + offset))
            else:
                control.bind(self.args.bind or self.endpoint())
            data.bind("tcp://127.0.0.1:*")
            self.control_ep = control.getsockopt(zmq.LAST_ENDPOINT).decode()
            report = roles.ReportChannel(self) if self.role == "receiver" else None
            self.t0_ns = time.time_ns()
            if report and self.args.journal:
                self.open_journal()
            if report and self.args.incarnation == 1:
                self.say_state("bound")     # a fault at T s counts from here, the timeline's t0
            self.bound.set()
            poller = zmq.Poller()
            poller.register(control, zmq.POLLIN)
            poller.register(data, zmq.POLLIN)
            if report:
                poller.register(report.sock, zmq.POLLIN)
            recv = getattr(self.pattern, "recv", None) or (lambda s: s.recv(zmq.NOBLOCK))
            reply = getattr(self.pattern, "reply", None)
            poll, take, monotonic = poller.poll, self.take, time.monotonic
            while True:
                # Not the originals' blocking poll: the main loop must notice, on its own,
                # when the senders' final counts are known (an idle zmq_poll runs the same
                # pending commands whether it wakes on them or on this tick).
                ready = dict(poll(LOOP_TICK_MS))
                if ready:
                    try:
                        if report and report.sock in ready:
                            report.serve()
                        elif control in ready:          # `continue` in the originals: control first
                            msg = recv(control)
                            take(msg)
                            if reply is not None:       # reqrep: the REP answers each request at once
                                reply(control, msg)
                            self.last_progress = monotonic()
                        else:
                            data.recv(zmq.NOBLOCK)
                            self.data_received += 1
                            self.last_progress = monotonic()
                    except zmq.Again:
                        pass
                if self.stalled_peer is not None:
                    break
                if self.drained(monotonic()):
                    break
        except Exception as exc:  # a poll error must never silently end the loop
            self.fail("main loop", exc)
            return
        self.emit("harness", stalled=self.stalled_peer is not None)

    def open_journal(self):
        """--journal: keep what this receiver takes; a receiver started in place of a killed
        one (--incarnation 2) first takes again what the killed one had taken, and keeps its t0
        (scenarios/journal.py). Before the main loop's first poll: a reconnecting sender's
        pings wait in libzmq meanwhile, after the killed receiver's in the journal."""
        path = self.args.journal
        if self.args.incarnation == 1:
            self.journal = journal.Writer(path, self.t0_ns)
            return
        t0_ns, records = journal.read(path)
        started_ns = time.time_ns()
        self.t0_ns = t0_ns
        for at, msg in records:
            self.take(msg, replayed_at=at)
        self.receiver_restarts.append({
            "incarnation": self.args.incarnation, "started_ms": round((started_ns - t0_ns) / 1e6, 3),
            "replayed": len(records), "pings_replayed": self.pings_in,
            "last_taken_ms": round((records[-1][0] - t0_ns) / 1e6, 3) if records else None,
            "note": "counts carried over from the killed receiver's journal; what its libzmq had "
                    "read but not handed over, and its socket events, died with it"})
        self.journal = journal.Writer(path, t0_ns, append=True)
        self.debug("receiver incarnation %d: %d messages replayed from %s"
                   % (self.args.incarnation, len(records), path))

    def drained(self, now):
        """True when the run is over: every count known and in, or nothing new for long enough."""
        if self.final_at is None:
            if not self.shutdown_received:
                return False
            # The shutdown arrived before the senders' accounts (or, in threads, before the
            # main program returned from its send): the old drain, bounded by the stall window.
            # A receiver waits for the account even when all is in: it is the evidence
            # (versions, the sender's events), and it follows the shutdown at once.
            quiet = now - self.last_progress > self.args.stall
            return quiet if self.role == "receiver" else (self.all_in() or quiet)
        if self.all_in() and self.shutdown_received:
            return self.drain_done(now, "all in")
        window = self.drain_window()
        if self.unconnected():
            # A thread still missing pings whose connection was never seen up may have them
            # queued for a connection still being made (a loaded machine, a slow peer): they
            # are late, not lost, and only the stall window may call them lost.
            window = self.args.stall
        quiet = now - max(self.last_progress, self.final_at)
        if quiet <= window:
            return False
        if self.args.audit_drain and self.audit is None:
            # The fast verdict would be taken here: keep listening for the stall window to
            # count anything that would have come too late for it.
            self.audit = {"audit": {"decided_after_s": round(now - self.final_at, 4),
                                    "received_at_decision": self.received()}}
            self.drain_done(now, "quiet")
        if self.audit is not None and quiet <= self.args.stall:
            return False
        if self.audit is not None:
            self.audit["audit"]["late"] = self.received() - self.audit["audit"]["received_at_decision"]
            return True
        return self.drain_done(now, "quiet")

    def events(self):
        """Socket-monitor events of this process and of every sender process's account (t_ns
        on this side's clock)."""
        return self.monitor.snapshot() + [e for p in self.peers for e in p.get("events", ())]

    def unconnected(self):
        """Threads still missing pings with no sign their connection came up: nothing
        received from them and no CONNECTED/HANDSHAKE_SUCCEEDED event of their socket. (inproc
        pipes are attached by zmq_connect itself: always up.)"""
        if self.args.transport == "inproc":
            return []
        self.settle_killed()
        missing = [t for t, (tally, n) in enumerate(zip(self.tallies, (s.completed for s in self.senders)))
                   if tally.received == 0 and tally.missing_for(n)]
        if not missing:
            return []
        events = self.events()
        # The receiver's side counts too: a sender that sends and closes at once may have its
        # monitor stopped before its connection completes, but the bound socket still sees
        # every connection it accepts (ACCEPTED: libzmq 4.1 on; one per sender socket here).
        # (pub-binds: the receiver connects, so it is CONNECTED it sees, once per sender socket)
        up_here = "CONNECTED" if self.args.variant in flags.RECEIVER_CONNECTS else "ACCEPTED"
        accepted = sum(1 for e in events if e["side"] == "receiver" and e["event"] == up_here)
        sockets = 1 if self.args.variant == "shared" else self.args.threads + 1     # + the shutdown's
        sockets *= self.current         # a killed incarnation's connections were accepted too
        if accepted >= sockets:
            return []
        up = {e["thread"] for e in events if e["side"] == "sender" and e["event"] in UP_EVENTS}
        return [t for t in missing if t not in up]

    def drain_window(self):
        if self.args.full_drain:
            # a fault's heal leaves the data connection's TCP backed off (retransmissions seconds
            # apart) while the account came over a fresh connection: the recent latency says
            # nothing about when the stragglers come (measured: a 3 s partition's pings came
            # after the short window had called them lost)
            return self.args.stall
        return min(self.args.stall, max(DRAIN_FLOOR_S, DRAIN_LATENCIES * self.latency_recent / 1e9))

    def drain_done(self, now, trigger):
        waiting = self.unconnected() if trigger == "quiet" else []
        self.drain = {"window_s": round(self.args.stall if waiting else self.drain_window(), 4), "waited_s": round(now - self.final_at, 4),
                      "latency_ms": {"recent": round(self.latency_recent / 1e6, 3),
                                     "max": round(self.latency_max / 1e6, 3)},
                      "trigger": trigger}
        if waiting:
            self.drain["unconnected"] = waiting
        return True

    def received(self):
        return sum(t.received for t in self.tallies)

    def take(self, msg, replayed_at=None):
        """The originals' processControlMsg(): in-order pings take the inline branch; anything
        else goes to Tally.see, which sorts gaps, reorders and duplicates. `replayed_at`: a
        message the killed receiver took, from its journal, with its receive time."""
        if replayed_at is None:
            now = time.time_ns()
            if self.journal is not None:
                self.journal.record(now, msg)
        else:
            now = replayed_at
        if msg[:1] == b"P":
            _, tid, seq, sent = PING.unpack(msg)
            self.pings_in += 1
            if self.pings_in == self.args.mark_after and replayed_at is None:
                self.say_state("mark")      # the lab applies a fault "after K pings" now
            tally = self.tallies[tid]
            if seq == tally.next_expected:
                tally.next_expected = seq + 1
                tally.received += 1
            else:
                tally.see(seq)
            latency = now - sent
            self.latency_recent = max(latency, int(self.latency_recent * LATENCY_DECAY))
            if latency > self.latency_max:
                self.latency_max = latency
            if self.first_recv[tid] is None:
                self.first_recv[tid] = (now, seq)
            self.last_recv_ns[tid] = now
            if self.recv_log is not None and 1 <= seq <= len(self.recv_log[tid]):
                self.recv_log[tid][seq - 1] = now
                if self.sent_log is not None:
                    self.sent_log[tid][seq - 1] = sent
        elif msg[:1] == SHUTDOWN:
            body = json.loads(msg[1:].decode())
            if self.incarnations > 1:
                if body.get("incarnation", 1) < self.incarnations:
                    self.debug("an earlier incarnation's shutdown: the run goes on")
                    return
                # the latest counts of the earlier incarnations are their records' (None)
                body["expected"] = [None] * (len(self.senders) - len(body["expected"])) + body["expected"]
            self.expected = body["expected"]
            self.shutdown_received = True
            self.debug("shutdown received")

    def all_in(self):
        # The senders' own counts once known (their accounts, or in threads their records);
        # the shutdown message's copy of them before that.
        expected = [s.completed for s in self.senders] if self.final_at is not None else self.expected
        if expected is not None and self.incarnations > 1:
            self.settle_killed()
            expected = [s.completed if n is None else n for s, n in zip(self.senders, expected)]
        return expected is not None and all(t.missing_for(n) == 0 for t, n in zip(self.tallies, expected))

    def control_thread(self, tid, shared):
        record = self.senders[tid]
        ctl = Ctl(self, record)
        args, fault = self.args, self.args.fault
        mine = fault if fault and fault[1] == tid else None
        pause = 1.0 / args.rate if args.rate else 0.0
        send, pack, clock, offset = self.send_fn(), PING.pack, time.time_ns, self.offset_ns
        times, rid = record.send_ns, record.id        # rid: tid past an incarnation's base
        keep = args.msgs if args.ping_log else SEND_TIMES
        try:
            record.state = "open"
            sock = self.pattern.open_sender(ctl, self.ctx, self.control_ep, shared)
            record.state = "running"
            seq = 1
            while seq <= args.msgs:
                if mine and seq == mine[2]:
                    seq = self.inject(ctl, sock, record, mine[0], seq)
                    continue
                record.attempted = seq
                now = clock() + offset
                if seq <= keep:
                    times.append(now)
                record.last_send_ns = now
                send(ctl, sock, self.control_ep, pack(b"P", rid, seq, now))
                record.completed = seq
                seq += 1
                if pause:
                    record.state = "pause"
                    time.sleep(pause)
            ctl.close_owned()
        except Exception as exc:
            self.fail("control thread %d" % tid, exc)

    def send_fn(self):
        """The pattern's send (connect/send/disconnect for pair), or a plain send."""
        return getattr(self.pattern, "send", None) or (lambda ctl, sock, endpoint, payload: ctl.send(sock, payload))

    def inject(self, ctl, sock, record, kind, seq):
        """Test-only faults that prove the detector; returns the next seq to send."""
        send = lambda n: self.send_fn()(ctl, sock, self.control_ep,  # noqa: E731
                                        PING.pack(b"P", record.id, n, time.time_ns() + self.offset_ns))
        record.attempted = seq
        if kind == "drop":                      # counted as sent, never sent: a loss in transit
            pass
        elif kind == "dup":
            send(seq)
            send(seq)
        elif kind == "swap":
            record.attempted = seq + 1
            send(seq + 1)
            send(seq)
            seq += 1
        elif kind == "block-sender":            # stuck "inside send" forever
            record.state = "send"
            self.fault_hold.wait()
        elif kind == "raise":
            raise RuntimeError("injected fault")
        elif kind == "freeze":                  # the whole process stops: only the lab's hard timeout ends it
            os.kill(os.getpid(), signal.SIGSTOP)
        record.completed = seq
        return seq + 1

    def send_shutdown(self, shared):
        ctl = Ctl(self, self.shutdown, blocking=True)
        self.shutdown.state = "open"
        sock = self.pattern.open_sender(ctl, self.ctx, self.control_ep, shared)
        body = {"expected": [s.completed for s in self.senders]}
        if self.args.incarnation > 1:           # the receiver maps these onto its records
            body.update(incarnation=self.args.incarnation, base=self.senders[0].id)
        body = json.dumps(body).encode()
        self.send_fn()(ctl, sock, self.control_ep, SHUTDOWN + body)
        self.shutdown.state = "done"      # its socket stays open: closing cannot take it back

    def say_state(self, state):
        """One state line for the lab (lab/slots.py), only when it asked for them."""
        if os.environ.get(STATE_ENV):
            try:
                write_all(2, (STATE_LINE % state).encode())
            except OSError:
                pass

    def announce_idle(self, quiet):
        """Tell the lab this run's receiver is idle, or busy again (the stall window of a
        deadlock, a deliberate --sleep, a drain): it may start another run meanwhile."""
        idle = quiet > IDLE_AFTER_S
        if self.role != "sender" and idle != self.idle:
            self.idle = idle
            self.say_state("idle" if idle else "busy")

    def watchdog(self):
        stall = self.args.stall
        while True:
            # A thread stuck inside libzmq while holding the GIL (pyzmq makes some calls, e.g.
            # connect, without releasing it) stops this thread too, and only the lab's hard
            # timeout ends the run. Re-armed every tick, faulthandler's own C thread writes every
            # Python stack to stderr if this thread misses a whole stall window plus a second;
            # the lab keeps that stderr as the evidence of its own classification.
            faulthandler.dump_traceback_later(stall + 1.0, exit=False)
            time.sleep(WATCHDOG_TICK)
            self.announce_idle(time.monotonic() - self.last_progress)
            # The main loop owns the drain after the shutdown arrived or the senders' final
            # counts are known; a deliberate --sleep is not a stall (read `sleeping` first:
            # progress() is written before it clears).
            if self.sleeping or self.shutdown_received or self.final_at is not None:
                continue
            quiet = time.monotonic() - self.last_progress
            if self.role == "receiver":
                # The sender's own watchdog fires after the same window and sends its stacks;
                # only a sender silent a second longer (frozen, gone) is judged from here.
                if quiet > stall + roles.PEER_GRACE_S:
                    self.emit("watchdog", stalled=True)
            elif quiet > stall:
                self.emit("watchdog", stalled=True)


def _refused(entry, record):
    """A ping-log entry with the seqs its sender's non-blocking sends gave up on (EAGAIN, from
    its account): stamped before the call, never sent, they must not be judged lost
    (lab/fault_verdicts.refused_seqs). Only when there are some: a plain run's log stays as it was."""
    if record.refused:
        entry["refused"] = sorted(record.refused)
    return entry


def monitor_lag(threads, events):
    """How late the collector stamped events, measured: a tcp connect's first event
    (CONNECT_DELAYED, or CONNECTED) is queued within microseconds of zmq_connect, so its stamp
    minus the thread's connect time is the collector's lateness then (GIL contention with busy
    senders). The worst over the run's threads, or None when no thread shows one."""
    connect = {t["id"]: t["connect_ms"] for t in threads if t["connect_ms"] is not None}
    first = {}
    for e in events:
        if e["side"] == "sender" and e["thread"] in connect and e["thread"] not in first \
                and e["event"] in ("CONNECT_DELAYED", "CONNECTED"):
            first[e["thread"]] = e["t_ms"] - connect[e["thread"]]
    return round(max(first.values()), 3) if first else None


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def stacks():
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    return {"%s (%d)" % (names.get(ident, "?"), ident): "".join(traceback.format_stack(frame))
            for ident, frame in sys._current_frames().items() if ident != me}


def versions():
    return {"pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version(),
            "draft": bool(zmq.has("draft")), "python": platform.python_version()}


def main(argv=None):
    args, pattern = parse_args(argv)
    if args.topology == "processes" and not args.role:
        return roles.launch_processes(argv if argv is not None else sys.argv[1:], args)
    run = Run(args, pattern)

    def interrupted(signum, frame):
        run.cleanup()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    reason = pattern.unsupported(args.variant) if hasattr(pattern, "unsupported") else None
    if reason is None:          # e.g. --heartbeat on a libzmq older than 4.2
        reason = args.sockopts.unsupported(zmq.zmq_version_info(), vars(zmq))
    if reason is None and args.transport == "ipc" and not zmq.has("ipc"):
        reason = "this libzmq has no ipc transport"
    if reason:
        run.emit("harness", unsupported=reason)
    run.monitor.start()
    threading.Thread(target=run.watchdog, name="watchdog", daemon=True).start()
    if run.role == "sender":
        roles.sender_hello(run)         # the receiver is bound and the clocks are aligned
    else:
        threading.Thread(target=run.main_loop, name="main-loop", daemon=True).start()
        run.bound.wait()
    if run.role == "receiver":
        while True:       # the main loop or the watchdog ends the process
            time.sleep(3600)
    try:
        shared = None
        if hasattr(pattern, "open_shared"):      # made by the main program, as in the reference
            shared = pattern.open_shared(Ctl(run, run.shutdown, blocking=True), run.ctx, run.control_ep, args.variant)
            run.shutdown.state = "not-started"
        run.progress()
        threads = [threading.Thread(target=run.control_thread, args=(i, shared), name="control-%d" % i,
                                    daemon=True) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run.debug("senders finished")
        if args.sleep:
            run.sleeping = True        # a deliberate pause is not a stall
            time.sleep(args.sleep)
            run.progress()
            run.sleeping = False
        run.send_shutdown(shared)
        if run.role == "sender":
            run.emit("harness")        # the account goes to the receiver; this process ends
        # In threads the senders' counts are in memory: known for sure from here on.
        run.final_at = time.monotonic()
    except Exception as exc:
        run.fail("main program", exc)
    while True:           # the main loop or the watchdog ends the process
        time.sleep(3600)
