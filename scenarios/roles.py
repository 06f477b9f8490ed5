"""The two sides of a run in separate processes or containers (docs/topology.md).

The receiver (main loop) and the sender (control threads) run the same harness with --role.
Beside the pattern's own sockets they share a **report channel**, a ROUTER the receiver binds
and a DEALER per sender process, over which the sender
  1. says hello until the receiver answers: the receiver answers only once bound, so the
     pattern's sockets connect after the bind, as in the originals; the answers also carry
     the receiver's clock (NTP-style alignment: the best of CLOCK_EXCHANGES round trips);
  2. after its shutdown message, sends its account: per thread attempted/completed/refused/
     state and its part of the timeline, or, when its own watchdog saw it stall, its stacks.
The account is what lets the receiver stop waiting early (the drain window) and still call a
sender stuck in another container a deadlock, with that sender's stacks.

`launch_processes` is the `processes` topology: this program starting both sides.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import zmq

from scenarios import incarnations, merge

CLOCK_EXCHANGES = 5
PEER_GRACE_S = 1.0          # receiver: how much longer than the stall window a silent sender gets
HELLO_DEADLINE_S = 20.0     # sender: the receiver's container may still be starting
ACK_WAIT_S = 2.0            # sender: how long it waits for the receiver to take its account


def _send(sock, kind, body, ident=None):
    """One report-channel message; `ident` routes a ROUTER's answer to its sender."""
    sock.send_multipart(([ident] if ident is not None else []) + [kind, json.dumps(body).encode()])


class ReportChannel:
    """The receiver's end: served from the main loop (which owns the socket)."""

    def __init__(self, run):
        self.run = run
        self.sock = run.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(run.args.report_bind)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        if run.args.announce:
            ready = {"ready": {"bind": run.control_ep, "report": self.endpoint}}
            os.write(1, (json.dumps(ready) + "\n").encode())

    def serve(self):
        ident, kind, body = self.sock.recv_multipart(zmq.NOBLOCK)
        run = self.run
        if kind == b"hello":
            run.last_progress = time.monotonic()  # a sender saying hello is not a stall
            _send(self.sock, b"time", {"t2": time.time_ns()}, ident)
            if run.incarnations > 1:
                hello = json.loads(body.decode())
                run.hellos.setdefault(hello.get("incarnation", 1), hello)
                self.incarnation_seen(hello.get("incarnation", 1))
            return
        if kind != b"account":
            return
        acc = json.loads(body.decode())
        _send(self.sock, b"ack", {}, ident)
        self.take(acc)

    def incarnation_seen(self, k):
        """Sender incarnation k said hello (or gave its account): every earlier one is over,
        and its threads that never gave an account were killed with it. The receiver answered
        that hello before k's control threads started, so no ping of k comes before this."""
        run = self.run
        if k <= run.current:
            return
        run.current = k
        for record in run.senders[:(k - 1) * run.args.threads]:
            if record.state == "no-account":
                record.state = incarnations.KILLED
                run.killed = True
        run.debug("sender incarnation %d started: the ones before it are over" % k)

    def take(self, acc):
        run = self.run
        k = acc.get("incarnation", 1)
        if run.incarnations > 1:
            self.incarnation_seen(k)
        base = (k - 1) * run.args.threads
        for record, theirs, tally in zip(run.senders[base:], acc["threads"], run.tallies[base:]):
            record.take_account(theirs)
            _forget_refused(tally, record.refused)
        # Only the last incarnation's account ends the run (an earlier one that was not
        # killed after all told its threads' counts; the next one is still to come).
        last = k == run.incarnations
        if last:
            run.shutdown.take_account(acc["shutdown"])
        run.peers.append({"role": "sender", "host": acc.get("host"), "pid": acc.get("pid"),
                          "versions": acc.get("versions"), "account": acc["kind"], "clock": acc.get("clock"),
                          "events": acc.get("events", []), "stacks": None})
        if run.incarnations > 1:
            run.peers[-1]["incarnation"] = k
        if acc["kind"] == "unsupported":
            run.emit("harness", unsupported="sender side: " + acc["unsupported"])
        if acc["kind"] == "error":
            run.emit("harness", error="sender side: " + acc["error"])
        if acc["kind"] == "stalled":
            run.peers[-1]["stacks"] = acc.get("stacks")
            run.stalled_peer = acc
        elif last:
            run.final_at = time.monotonic()


def _forget_refused(tally, refused):
    """Seqs the sender's non-blocking sends gave up on (known only from its account) never
    entered the transport: they are not missing."""
    if not refused or not tally.missing:
        return
    tally.missing.difference_update(refused)
    gap = tally.first_gap
    if gap is not None and gap["expected"] in refused:
        tally.first_gap = {"expected": min(tally.missing), "got": None} if tally.missing else None


# ---------------------------------------------------------------- the sender's side

def sender_hello(run):
    """Wait for the receiver, measure the clock offset; then the control threads may start."""
    args = run.args
    run.control_ep = args.connect
    run.clock = None
    dealer = run.ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(args.report)
    deadline = time.monotonic() + max(HELLO_DEADLINE_S, 3 * args.stall)
    best, host = None, socket.gethostname()
    try:
        while (best is None or len(best) < CLOCK_EXCHANGES) and time.monotonic() < deadline:
            t1 = time.time_ns()
            _send(dealer, b"hello", {"t1": t1, "incarnation": args.incarnation, "host": host, "pid": os.getpid()})
            if not dealer.poll(500, zmq.POLLIN):
                continue                       # not bound yet: libzmq reconnects; ask again
            kind, body = dealer.recv_multipart()
            t3 = time.time_ns()
            t2 = json.loads(body.decode())["t2"]
            sample = (t3 - t1, t2 - (t1 + t3) // 2)
            best = (best or []) + [sample]
    finally:
        dealer.close(0)
    if not best:
        run.emit("harness", error="the receiver's report channel at %s never answered within %.0f s"
                 % (args.report, max(HELLO_DEADLINE_S, 3 * args.stall)))
    rtt, offset = min(best)
    run.offset_ns = offset
    run.clock = {"offset_ms": round(offset / 1e6, 4), "error_ms": round(rtt / 2e6, 4)}
    run.progress()


def finish_sender(run, stalled, error, unsupported):
    """Hand the account to the receiver, print this side's own document, end the process."""
    from scenarios.harness import stacks, versions, write_all
    kind = "unsupported" if unsupported else "error" if error else "stalled" if stalled else "final"
    shift = lambda e: dict(e, t_ns=e["t_ns"] + run.offset_ns)  # noqa: E731
    acc = {"kind": kind, "host": socket.gethostname(), "pid": os.getpid(), "versions": versions(),
           "clock": getattr(run, "clock", None),
           "threads": [r.account() for r in run.senders], "shutdown": run.shutdown.account(),
           "events": [shift(e) for e in run.monitor.snapshot()],
           "stacks": stacks() if stalled else None, "error": error, "unsupported": unsupported,
           # how long this side had not moved, and when it said so (receiver's clock): the
           # receiver's stall.since_progress_s is about the stuck threads, which are here
           "since_progress_s": round(time.monotonic() - run.last_progress, 4),
           "sent_ns": time.time_ns() + run.offset_ns}
    if run.args.incarnation > 1:        # which records are these (scenarios/incarnations.py)
        acc.update(incarnation=run.args.incarnation, base=run.senders[0].id)
    delivered = False
    if getattr(run, "clock", None) is not None or unsupported:
        delivered = _deliver(run, acc)
    doc = {"schema": "zmqlab.sender/1", "versions": acc["versions"], "account": acc, "delivered": delivered}
    try:
        write_all(1, (json.dumps(doc) + "\n").encode())
        if not run.args.quiet:
            write_all(2, ("sender: %s%s\n" % (kind, ": " + (error or unsupported) if (error or unsupported) else "")).encode())
    except OSError:
        pass
    os._exit(0)


def _deliver(run, acc):
    """A fresh DEALER (the caller may be any thread). True once the receiver acknowledged;
    None when the receiver's connection closed first (it ended right after taking the
    account, before libzmq sent the ack: its report says whether it took it); False when
    neither came within ACK_WAIT_S."""
    dealer = run.ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    gone = None
    try:
        gone = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED, addr="inproc://zmqlab-account-%d" % os.getpid())
    except (zmq.ZMQError, AttributeError):
        pass
    try:
        dealer.connect(run.args.report)
        _send(dealer, b"account", acc)
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        if gone is not None:
            poller.register(gone, zmq.POLLIN)
        ready = dict(poller.poll(int(ACK_WAIT_S * 1000)))
        if dealer in ready and gone is not None and acc["kind"] == "final":
            # Stay alive until the receiver is done: os._exit would drop what libzmq still
            # holds for a connection not yet up (a PUSH queues its pings until then), and
            # the receiver would call them lost. Its end closes this connection.
            gone.poll(int((run.args.stall + 5) * 1000), zmq.POLLIN)
        if dealer in ready:
            return True
        return None if ready else False
    except zmq.ZMQError:
        return False
    finally:
        if gone is not None:
            gone.close(0)
        dealer.close(0)


# ---------------------------------------------------------------- processes topology

def _die_with_parent():
    """Children end with this launcher even if it is SIGKILLed (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def launch_processes(argv, args):
    """Start the receiver, then the sender at the receiver's announced endpoints; print the
    receiver's report with the sender's own account attached where the receiver lacks it."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "scenarios"] + list(argv)
    children = []

    def stop(signum, frame):
        for child in children:
            if child.poll() is None:
                child.kill()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    receiver = subprocess.Popen(cmd + ["--role", "receiver", "--announce"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
    children.append(receiver)
    err_box = {"rx": b""}

    def receiver_stderr():
        # the receiver's idle/busy lines (harness.announce_idle) are the lab's, and it needs
        # them while the run goes on: passed through at once; the rest after the run
        for line in iter(receiver.stderr.readline, b""):
            if line.startswith(b"zmqlab-run-state: "):
                os.write(2, line)
            else:
                err_box["rx"] += line
    rx_err = threading.Thread(target=receiver_stderr, daemon=True)
    rx_err.start()
    first = receiver.stdout.readline()
    try:
        ready = json.loads(first.decode())["ready"]
    except (ValueError, KeyError, TypeError):
        # Unsupported (or broken) before it bound: its report, if any, is that line.
        rest = receiver.stdout.read()
        receiver.wait()
        rx_err.join(5)
        sys.stdout.write((first + rest).decode("utf-8", "replace"))
        sys.stderr.write(err_box.get("rx", b"").decode("utf-8", "replace"))
        return receiver.returncode
    sender = subprocess.Popen(cmd + ["--role", "sender", "--connect", ready["bind"], "--report", ready["report"]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
    children.append(sender)
    tx = {}
    tx_io = threading.Thread(target=lambda: tx.update(zip(("out", "err"), sender.communicate())), daemon=True)
    tx_io.start()
    out = receiver.stdout.read()
    receiver.wait()
    rx_err.join(5)
    # A sender whose account reached the receiver exits at once; one that never gave it is
    # frozen or stuck past its own watchdog: collect what it printed, briefly, then end it.
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1]) if lines else None
    silent = report is None or any(p.get("account") == "none" for p in report.get("peers", []))
    tx_io.join(ACK_WAIT_S if silent else args.stall + 5)
    if sender.poll() is None:           # it had its stall window and ACK_WAIT_S: stuck for good
        sender.kill()
        tx_io.join(5)
    if report is not None:
        report = merge.attach(report, (tx.get("out") or b"").decode("utf-8", "replace"),
                              (tx.get("err") or b"").decode("utf-8", "replace"))
        sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    sys.stderr.write(err_box.get("rx", b"").decode("utf-8", "replace"))
    return receiver.returncode
