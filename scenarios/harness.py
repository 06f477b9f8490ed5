"""The one scenario harness: flags, control threads, the poll loop, sequence checks, the
watchdog and the JSON report. A pattern module (pair.py, pubsub.py, ...) holds only its
socket code: open_receiver(ctx) and open_sender(ctl, ctx, endpoint, shared); and where it
differs from the default: unsupported(variant) (default: supported), open_shared(ctl, ctx,
endpoint, variant) (a socket every control thread shares; default none), recv(sock) (default:
one frame, non-blocking) and send(ctl, sock, endpoint, payload) (default: ctl.send). Its name
and variants are listed in flags.py.

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

from scenarios import flags
from scenarios.evidence import Tally, classify, thread_rows, totals

PING = struct.Struct("!cII")          # b"P", thread id, sequence number
SHUTDOWN = b"S"                       # followed by JSON {"expected": [completed per thread]}
WATCHDOG_TICK = 0.05                  # seconds: classification lands within stall + this


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
    __slots__ = ("id", "attempted", "completed", "refused", "state")

    def __init__(self, tid):
        self.id, self.attempted, self.completed, self.state = tid, 0, 0, "not-started"
        self.refused = set()

    def as_dict(self):
        return {"id": self.id, "attempted": self.attempted, "completed": self.completed,
                "would_block": len(self.refused), "state": self.state}


class Ctl:
    """What a pattern's sender code may call: each zmq call goes through `step`, so the
    watchdog always knows which call a stuck thread is in."""

    def __init__(self, run, record, blocking=False):
        self.run, self.record, self.sync = run, record, run.args.sync
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
        self.owned.append(sock)
        return sock

    def connect(self, sock, endpoint):
        self.step("connect", sock.connect, endpoint)
        if self.poll_after_connect:
            self.step("poll", sock.poll, 1, zmq.POLLIN)

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
        self.record.state = "close"
        for sock in self.owned:
            sock.close()
        self.record.state = "done"


class Run:
    def __init__(self, args, pattern):
        self.args, self.pattern = args, pattern
        self.ctx = zmq.Context()
        self.started = self.last_progress = time.monotonic()
        self.senders = [SenderRecord(i) for i in range(args.threads)]
        self.tallies = [Tally(refused=s.refused) for s in self.senders]
        self.shutdown = SenderRecord(-1)
        self.shutdown_received = False
        self.sleeping = False
        self.expected = None
        self.data_received = 0
        self.bound = threading.Event()
        self.pair_lock = threading.Lock()
        self.emit_lock = threading.Lock()
        self.tmpdir = None
        self.control_ep = None
        self.fault_hold = threading.Event()     # never set: a blocked sender waits on it

    def progress(self):
        self.last_progress = time.monotonic()

    def socket(self, kind):
        """Every socket as the originals' createSocket(): ZMQ_LINGER set (default 30000 ms)."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, self.args.linger)
        return sock

    def debug(self, msg):
        if self.args.debug:
            sys.stderr.write("[%.3f] %s\n" % (time.monotonic() - self.started, msg))

    # --- the report --------------------------------------------------------------------
    def emit(self, classified_by, stalled=False, error=None, unsupported=None):
        """Classify, print the one JSON report, clean up, and end the process. First caller wins."""
        if not self.emit_lock.acquire(blocking=False):
            return
        now = time.monotonic()
        rows = thread_rows([s.as_dict() for s in self.senders], self.tallies)
        outcome, reason = classify(rows, self.shutdown_received, stalled, self.shutdown.state,
                                   error=error, unsupported=unsupported)
        refused = sum(len(s.refused) for s in self.senders)
        if refused:
            reason += "; %d sends refused with EAGAIN at the sender (--nowait), not counted as lost" % refused
        stall = None
        if stalled:
            stall = {"since_progress_s": round(now - self.last_progress, 3), "stacks": stacks()}
        duration = now - self.started
        report = {
            "schema": "zmqlab.run/1",
            "versions": versions(),
            "params": flags.params(self.args),
            "outcome": outcome, "reason": reason, "classified_by": classified_by,
            "threads": rows,
            "totals": totals(rows, self.args.threads * self.args.msgs),
            "shutdown_received": self.shutdown_received,
            "duration_s": round(duration, 4),
            "msgs_per_s": round(sum(t.received for t in self.tallies) / duration, 1) if duration > 0 else 0.0,
            "stall": stall,
            "error": error,
        }
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
        to zmq_poll, so batching receives would change how soon a new sender is attached."""
        try:
            control = self.pattern.open_receiver(self.ctx)
            control.setsockopt(zmq.LINGER, self.args.linger)
            # The originals' data socket: a SUB bound on tcp loopback that nobody feeds (their
            # fixed port 5101 becomes a port the OS picks, so parallel runs never collide).
            data = self.socket(zmq.SUB)
            control.bind(self.endpoint())
            data.bind("tcp://127.0.0.1:*")
            self.control_ep = control.getsockopt(zmq.LAST_ENDPOINT).decode()
            self.bound.set()
            poller = zmq.Poller()
            poller.register(control, zmq.POLLIN)
            poller.register(data, zmq.POLLIN)
            recv = getattr(self.pattern, "recv", None) or (lambda s: s.recv(zmq.NOBLOCK))
            poll, take, monotonic = poller.poll, self.take, time.monotonic
            timeout = None          # block in poll like the originals until the shutdown arrives
            while True:
                ready = dict(poll(timeout))
                if ready:
                    try:
                        if control in ready:          # `continue` in the originals: control first
                            take(recv(control))
                        else:
                            data.recv(zmq.NOBLOCK)
                            self.data_received += 1
                        self.last_progress = monotonic()
                    except zmq.Again:
                        pass
                if self.shutdown_received:
                    # The originals stop at the exit message and rely on -sleep for stragglers;
                    # the lab knows every thread's count, so it drains until all is in, or
                    # until nothing has moved for the stall window.
                    if self.all_in() or monotonic() - self.last_progress > self.args.stall:
                        break
                    timeout = 50
        except Exception as exc:  # a poll error must never silently end the loop
            self.fail("main loop", exc)
            return
        self.emit("harness")

    def take(self, msg):
        """The originals' processControlMsg(): in-order pings take the inline branch; anything
        else goes to Tally.see, which sorts gaps, reorders and duplicates."""
        if msg[:1] == b"P":
            _, tid, seq = PING.unpack(msg)
            tally = self.tallies[tid]
            if seq == tally.next_expected:
                tally.next_expected = seq + 1
                tally.received += 1
            else:
                tally.see(seq)
        elif msg[:1] == SHUTDOWN:
            self.expected = json.loads(msg[1:].decode())["expected"]
            self.shutdown_received = True
            self.debug("shutdown received")

    def all_in(self):
        return all(t.missing_for(n) == 0 for t, n in zip(self.tallies, self.expected))

    def control_thread(self, tid, shared):
        record = self.senders[tid]
        ctl = Ctl(self, record)
        args, fault = self.args, self.args.fault
        mine = fault if fault and fault[1] == tid else None
        pause = 1.0 / args.rate if args.rate else 0.0
        send, pack = self.send_fn(), PING.pack
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
                send(ctl, sock, self.control_ep, pack(b"P", tid, seq))
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
        send = lambda n: self.send_fn()(ctl, sock, self.control_ep, PING.pack(b"P", record.id, n))
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
        body = json.dumps({"expected": [s.completed for s in self.senders]}).encode()
        self.send_fn()(ctl, sock, self.control_ep, SHUTDOWN + body)
        self.shutdown.state = "done"      # its socket stays open: closing cannot take it back

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
            # The main loop owns the drain after the shutdown arrived; a deliberate --sleep
            # is not a stall (read `sleeping` first: progress() is written before it clears).
            if self.sleeping or self.shutdown_received:
                continue
            if time.monotonic() - self.last_progress > stall:
                self.emit("watchdog", stalled=True)


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
    run = Run(args, pattern)

    def interrupted(signum, frame):
        run.cleanup()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    reason = pattern.unsupported(args.variant) if hasattr(pattern, "unsupported") else None
    if reason is None and args.transport == "ipc" and not zmq.has("ipc"):
        reason = "this libzmq has no ipc transport"
    if reason:
        run.emit("harness", unsupported=reason)
    threading.Thread(target=run.watchdog, name="watchdog", daemon=True).start()
    threading.Thread(target=run.main_loop, name="main-loop", daemon=True).start()
    run.bound.wait()
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
    except Exception as exc:
        run.fail("main program", exc)
    while True:           # the main loop or the watchdog ends the process
        time.sleep(3600)
