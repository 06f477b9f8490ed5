"""What ZeroMQ promises under each fault scenario, with the source that says so.

Pure data plus a lookup (`expected_for`) and a judge (`judge`). Every entry quotes its source
verbatim: a libzmq man page at a release tag, libzmq's own code or NEWS at a tag, an issue
thread, or the zguide. docs/fault-expectations.md is the readable table of the same entries.

`expected` (what a run should show; fault_verdicts.FaultOutcome is what it did show):
  no-loss         nothing lost, inside or outside the window (refused sends are not losses)
  bounded-loss    loss only inside the window (in-flight or queued pings, no resend) and every
                  thread that had pings left delivers again within the stall window after the heal
  loss-in-window  loss only inside the window; recovery not judged
  stall           nothing delivered while the fault lasted (the peer's silence goes unnoticed)
  hang            the run deadlocks (a sender blocked for good) or a thread never recovers
  hang-if-waiting a REQ that was waiting for its reply when the fault struck hangs for good;
                  every other thread recovers, and none hangs on a request sent after the fault
                  (fault_verdicts: waiting_at_fault / hung_after)
  unsupported     the build lacks the option: the run reports unsupported or error
`by_design`: the loss or hang is what the library promises, so a baseline may record it as
expected; False marks a promise of no loss.

Version match (`libzmq`): "any", ">=4.2", "<4.2", or a mixed pair "4.1.6->4.3.5" (sender's
libzmq -> receiver's). Options: an entry applies when its options are a subset of the run's;
the most specific one wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

EXPECTED = ("no-loss", "bounded-loss", "loss-in-window", "stall", "hang", "hang-if-waiting", "unsupported")
# The PUB/SUB slow joiner: a connecting PUB drops what it sends before the SUB's subscription
# reached it (scenarios/pubsub.py; the lab's baseline records PUB/SUB loss). A fault verdict
# does not blame the fault for loss before a thread's first delivery on these patterns.
JOIN_LOSSY_PATTERNS = ("pubsub", "radiodish")

LIBZMQ_416 = "https://github.com/zeromq/libzmq/blob/v4.1.6/"
LIBZMQ_435 = "https://github.com/zeromq/libzmq/blob/v4.3.5/"
ZGUIDE = "https://github.com/booksbyus/zguide/blob/002d2689324a4ef39ef66ffbecdb9ff8786c66f5/"


@dataclass(frozen=True)
class Expectation:
    scenario_id: str
    pattern: str
    fault_kind: str
    target: str                    # "receiver" | "sender" | "any"
    options: frozenset
    expected: str
    by_design: bool
    source_url: str
    quote: str
    note: str
    libzmq: str = "any"

    def to_dict(self) -> dict:
        return {"scenario_id": self.scenario_id, "pattern": self.pattern, "fault_kind": self.fault_kind,
                "target": self.target, "options": sorted(self.options), "expected": self.expected,
                "by_design": self.by_design, "source_url": self.source_url, "quote": self.quote,
                "note": self.note, "libzmq": self.libzmq}


def _e(scenario_id, pattern, kind, target, expected, by_design, url, quote, note, options=(), libzmq="any"):
    return Expectation(scenario_id, pattern, kind, target, frozenset(options), expected, by_design,
                       url, quote, note, libzmq)


_ATTACH_SUB = (LIBZMQ_435 + "src/xsub.cpp#L46-L47", "Send all the cached subscriptions to the new upstream peer.")
_IMMEDIATE = (LIBZMQ_435 + "doc/zmq_setsockopt.txt#L432-L439",
              'By default queues will fill on outgoing connections even if the connection has\n'
              'not completed. This can lead to "lost" messages on sockets with round-robin\n'
              'routing (REQ, PUSH, DEALER).')
_PUSH_BLOCKS = (LIBZMQ_435 + "doc/zmq_socket.txt#L312-L317",
                "any linkzmq:zmq_send[3] operations on the socket shall block until the mute\n"
                "state ends or at least one downstream _node_ becomes available for sending;\n"
                "messages are not discarded.")
_SILENT_PEER = ("https://github.com/zeromq/libzmq/issues/1245",
                "Subscribers do not reconnect to publishers if the power cord is pulled, or the "
                "power button is held down on the publisher server.")
_HEARTBEAT_TIMEOUT = (LIBZMQ_435 + "doc/zmq_setsockopt.txt#L393-L400",
                      "The 'ZMQ_HEARTBEAT_TIMEOUT' option shall set how long to wait before timing-out a\n"
                      "connection after sending a 'PING' ZMTP command and not receiving any traffic.")
_NO_HEARTBEAT_416 = ("https://github.com/zeromq/pyzmq/issues/990",
                     "Those constants are part of a draft implementation only available on libzmq >= 4.2.")
_MIXED_SUB = (LIBZMQ_435 + "NEWS#L158-L159",
              "ZMTP 3.1 peers will receive subscribe/cancel on PUB/SUB via commands rather\n"
              "  than using the first byte of the payload.")

EXPECTATIONS = (
    # 1. Publisher kill -9 and restart (the lab's PUBs connect to the SUB the receiver binds).
    _e("pub-kill-restart", "pubsub", "kill", "sender", "bounded-loss", True, *_ATTACH_SUB,
       "A restarted PUB is a new connection: the bound SUB sends its subscription on attach, so the "
       "new incarnation delivers again. Pings the killed process had not flushed are gone (no "
       "persistence, no resend); the new PUB's first pings may still fall to the slow joiner. In "
       "#916's layout (the SUB connects to a restarted, bound PUB) the SUB resends on reconnect: "
       "session_base.cpp, 'For subscriber sockets we hiccup the inbound pipe, which will cause the "
       "socket object to resend all the subscriptions.'", libzmq=">=4.2"),
    _e("pub-kill-restart", "pubsub", "kill", "sender", "bounded-loss", True,
       LIBZMQ_416 + "src/xsub.cpp#L65-L66", "Send all the cached subscriptions to the new upstream peer.",
       "Same code in 4.1.6. The reconnect path of a connecting SUB resubscribes too (session_base.cpp "
       "hiccup); #916 (multiple subscriptions not all recovered, 4.0.x) was fixed as #1362 in 4.1.1/4.0.6 "
       "per NEWS.", libzmq="<4.2"),
    # ... and #916's own layout (--variant pub-binds): each PUB binds, the SUB connects to it
    _e("pub-kill-restart", "pubsub", "kill", "sender", "bounded-loss", True,
       LIBZMQ_435 + "src/session_base.cpp#L576-L577",
       "//  For subscriber sockets we hiccup the inbound pipe, which will cause\n"
       "    //  the socket object to resend all the subscriptions.",
       "The SUB's connection to the killed PUB breaks; its session reconnects every ZMQ_RECONNECT_IVL "
       "(100 ms) until the restarted PUB has bound the same port, and the hiccup resends the "
       "subscription. What the new PUB sends before that reconnect is dropped (the slow joiner of "
       "this layout, forgiven as join loss).", options=("pub-binds",), libzmq=">=4.2"),
    _e("pub-kill-restart", "pubsub", "kill", "sender", "bounded-loss", True,
       LIBZMQ_416 + "src/session_base.cpp#L496-L497",
       "//  For subscriber sockets we hiccup the inbound pipe, which will cause\n"
       "    //  the socket object to resend all the subscriptions.",
       "The same reconnect path in 4.1.6; #916 (4.0.x: of several subscriptions only one came back) "
       "was fixed as #1362 in 4.1.1 per NEWS.", options=("pub-binds",), libzmq="<4.2"),
    _e("sub-kill-restart", "pubsub", "kill", "receiver", "bounded-loss", True, *_ATTACH_SUB,
       "The PUBs reconnect (ZMQ_RECONNECT_IVL, 100 ms default) and the restarted SUB, which binds in the "
       "lab, sends its subscriptions on each new pipe. Pings sent while no SUB was there are dropped. "
       "Open #4063: with hundreds of topics through an XPUB/XSUB proxy restart, subscriptions were not "
       "all recovered on 4.3.1; the lab subscribes to one topic (\"\").", libzmq="any"),
    # 2. Silent peer (partition).
    _e("partition-no-heartbeat", "pushpull", "partition", "any", "stall", True, *_SILENT_PEER,
       "TCP does not notice a silent peer: nothing is delivered until the heal; then TCP retransmits "
       "what it held and traffic resumes (pings sent inside arrive late), unless the kernel gave up."),
    _e("partition-no-heartbeat", "pubsub", "partition", "any", "stall", True, *_SILENT_PEER,
       "As for PUSH/PULL; a PUB whose pipe reaches SNDHWM while the partition lasts drops from then on "
       "(zmq_socket: PUB mute state), so a long partition also loses pings inside the window."),
    _e("partition-heartbeat", "pushpull", "partition", "any", "bounded-loss", True, *_HEARTBEAT_TIMEOUT,
       "Heartbeats on: the connection times out after HEARTBEAT_TIMEOUT (monitor: DISCONNECTED), the "
       "connecting side reconnects after the heal (CONNECTED); libzmq's own test expects 'an accepted "
       "event then a disconnect event' (tests/test_heartbeats.cpp). What the dead connection held in "
       "the kernel is lost; the pipe (ZMQ_IMMEDIATE off) keeps the rest.",
       options=("heartbeat",), libzmq=">=4.2"),
    _e("partition-heartbeat", "pubsub", "partition", "any", "bounded-loss", True, *_HEARTBEAT_TIMEOUT,
       "As for PUSH/PULL; the reconnected SUB resubscribes (session_base.cpp hiccup).",
       options=("heartbeat",), libzmq=">=4.2"),
    _e("heartbeat-416", "any", "partition", "any", "unsupported", False, *_NO_HEARTBEAT_416,
       "ZMQ_HEARTBEAT_* first shipped in libzmq 4.2.0 (NEWS: 'New Socket options'); 4.1.6's zmq.h has "
       "no ZMQ_HEARTBEAT_IVL.", options=("heartbeat",), libzmq="<4.2"),
    # 3. PUSH / DEALER to a dead or not-yet-connected peer.
    _e("push-dead-peer", "pushpull", "kill", "receiver", "bounded-loss", True, *_IMMEDIATE,
       "ZMQ_IMMEDIATE off: the pipe outlives the connection and is delivered on reconnect; what the "
       "killed receiver had taken in but not handed to the application, and what the kernel held, is "
       "lost."),
    _e("push-dead-peer", "pushpull", "kill", "receiver", "bounded-loss", True,
       LIBZMQ_435 + "src/session_base.cpp#L537-L557",
       "//  For delayed connect situations, terminate the pipe\n    //  and reestablish later on",
       "ZMQ_IMMEDIATE on: on disconnect the session terminates the pipe (its queued pings go with it), "
       "then sends block until the restarted receiver is connected (zmq_socket: PUSH mute state, "
       "'messages are not discarded').", options=("immediate",)),
    _e("dealer-dead-peer", "routerdealer", "kill", "receiver", "bounded-loss", True, *_IMMEDIATE,
       "As for PUSH: DEALER is round-robin; with one peer the kept pipe delivers on reconnect."),
    _e("dealer-dead-peer", "routerdealer", "kill", "receiver", "bounded-loss", True,
       LIBZMQ_435 + "doc/zmq_socket.txt#L620-L624",
       "ZMQ_IMMEDIATE option is set and there are no peers at all, then any\n"
       "linkzmq:zmq_send[3] operations on the socket shall block until the mute state\n"
       "ends or at least one peer becomes available for sending; messages are not discarded.",
       "ZMQ_IMMEDIATE on: new sends block while the peer is gone; the pipe of the dead connection is "
       "terminated on reconnect (session_base.cpp), so what it held is lost.", options=("immediate",)),
    # 4. TCP reset mid-stream.
    _e("reset-pushpull", "pushpull", "reset", "any", "bounded-loss", True,
       "https://github.com/zeromq/libzmq/issues/3392",
       "Messages are dropped after connection comes back.",
       "The reporter's words (libzmq 4.3.1, iptables REJECT --reject-with tcp-reset); the thread was "
       "closed as stale without a fix. libzmq reconnects but does not resend what the kernel had "
       "accepted on the reset connection. The maintainer's reply is cut off in the stored copy, so it "
       "is not quoted here."),
    # 5. Paused subscriber past its HWM.
    _e("pub-hwm-drop", "pubsub", "pause", "receiver", "loss-in-window", True,
       LIBZMQ_435 + "doc/zmq_socket.txt#L229-L232",
       "When a 'ZMQ_PUB' socket enters the 'mute' state due to having reached the\n"
       "high water mark for a _subscriber_, then any messages that would be sent to the\n"
       "_subscriber_ in question shall instead be dropped until the mute state\nends.",
       "Loss only once a connection's queues are full: the PUB's SNDHWM (1000 by default) plus its "
       "engine's batch and the kernel's buffers, the PUB's send buffer and the paused SUB's receive "
       "buffer (the kernel still takes data for a frozen process). ~17-byte pings fill the default "
       "buffers only after thousands, so a short pause may lose nothing (measured: pause:rx@1+2 with "
       "hwm10 alone lost none). ZMQ_SNDBUF/ZMQ_RCVBUF (sockopts bufN, tcp) shrink them: libzmq sets them "
       "on the socket it opens to connect or listen (v4.3.5 src/tcp.cpp tcp_open_socket, 'Set the socket "
       "buffer limits for the underlying socket.'; v4.1.6 tcp_connecter.cpp/tcp_listener.cpp), an "
       "accepted socket inheriting the listener's; with hwm10+buf4k the mute state comes within the pause."),
    _e("xpub-nodrop", "pubsub", "pause", "receiver", "no-loss", False,
       LIBZMQ_435 + "doc/zmq_setsockopt.txt#L1229-L1231",
       "A value of `1` returns an 'EAGAIN' error code if the\nSNDHWM is reached and ZMQ_DONTWAIT was used.",
       "With --nowait the refused sends are counted as refused, not lost (the run's would_block; "
       "fault_verdicts leaves them out of the window's loss); without it the send blocks until the "
       "subscriber drains (socket_base_t::send retries on EAGAIN unless ZMQ_DONTWAIT). The SNDHWM is "
       "reached inside a pause only once the kernel's buffers are full: small ZMQ_SNDBUF/ZMQ_RCVBUF "
       "(hwm10+buf4k+nodrop) make it. 4.1.6 has the option in code (xpub.cpp) but not in its man page.",
       options=("xpub-nodrop",)),
    # 6. REQ/REP with the REP killed.
    _e("req-rep-killed", "reqrep", "kill", "receiver", "hang-if-waiting", True,
       ZGUIDE + "chapter4.txt",
       "If the server crashes while processing the request, the client just hangs forever.",
       "The zguide (Reliable Request-Reply). Issue #1227 (libzmq 4.0.5) reports zmq_recv on REQ "
       "'hangs in a never-returning epoll system call' after the REP dies; closed. 'While "
       "processing': a REQ between requests when the REP dies sends its next one into the pipe "
       "libzmq keeps while it reconnects (ZMQ_IMMEDIATE off), and the restarted REP answers it; "
       "so only the threads whose request was out when the kill landed hang."),
    # 7. Mixed versions under reconnect.
    _e("mixed-pub-kill", "pubsub", "kill", "sender", "bounded-loss", True, *_MIXED_SUB,
       "4.1.6 speaks ZMTP 3.0: 4.3.5 negotiates 3.0 for that connection (zmtp_engine.cpp "
       "handshake_v3_0) and exchanges subscriptions the old way; both send them on attach, so the "
       "restarted 4.1.6 PUB delivers again. Inferred from the code; no maintainer statement on this pair.",
       libzmq="4.1.6->4.3.5"),
    _e("mixed-pub-kill", "pubsub", "kill", "sender", "bounded-loss", True, *_MIXED_SUB,
       "The reverse: a restarted 4.3.5 PUB against a 4.1.6 SUB, the same negotiation. Inferred from the "
       "code; no maintainer statement on this pair.", libzmq="4.3.5->4.1.6"),
    # ... and in #916's layout (--variant pub-binds), where the SUB reconnects: both versions
    # resend through the same hiccup (session_base.cpp, entries above), over the negotiated ZMTP
    _e("mixed-pub-kill", "pubsub", "kill", "sender", "bounded-loss", True, *_MIXED_SUB,
       "The SUB (4.3.5) reconnects to the restarted 4.1.6 PUB and resends its subscription through the "
       "hiccup both versions' session_base.cpp have; the connection speaks ZMTP 3.0, so it goes as a "
       "message, not a command. Inferred from the code; no maintainer statement on this pair.",
       options=("pub-binds",), libzmq="4.1.6->4.3.5"),
    _e("mixed-pub-kill", "pubsub", "kill", "sender", "bounded-loss", True, *_MIXED_SUB,
       "The reverse: a 4.1.6 SUB reconnecting to a restarted 4.3.5 PUB, the same path. Inferred from "
       "the code; no maintainer statement on this pair.", options=("pub-binds",), libzmq="4.3.5->4.1.6"),
    # 8. Short receiver pause, bandwidth limit.
    _e("push-pause-short", "pushpull", "pause", "receiver", "no-loss", False, *_PUSH_BLOCKS,
       "A pause under the HWM only delays: PUSH blocks in its mute state and never discards."),
    _e("push-pause-sender", "pushpull", "pause", "sender", "no-loss", False, *_PUSH_BLOCKS,
       "A frozen sender sends nothing; what it queued is delivered after unpause."),
    _e("push-bandwidth", "pushpull", "bandwidth", "any", "no-loss", False, *_PUSH_BLOCKS,
       "A rate limit makes the run slower (the matrix shows msgs/s), never lossy."),
)


def _version_tuple(v: str) -> tuple:
    parts = []
    for p in v.split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _version_matches(spec: str, version: str) -> bool:
    if spec == "any":
        return True
    if "->" in spec:
        return spec == version
    if "->" in version:                   # a mixed pair matches a plain spec when both sides do
        return all(_version_matches(spec, v) for v in version.split("->"))
    for op in (">=", "<=", "<", ">", "=="):
        if spec.startswith(op):
            a, b = _version_tuple(version), _version_tuple(spec[len(op):])
            return {">=": a >= b, "<=": a <= b, "<": a < b, ">": a > b, "==": a == b}[op]
    return _version_tuple(spec) == _version_tuple(version)


def expected_for(pattern: str, kind: str, target: str, options, libzmq_version: str) -> Optional[Expectation]:
    """The most specific expectation for a run, or None when no source speaks to it.

    A mixed pair "A->B" takes an entry naming that pair first, else one both versions match."""
    options = frozenset(options or ())
    mixed = "->" in libzmq_version and len(set(libzmq_version.split("->"))) > 1
    scenario = [e for e in EXPECTATIONS if e.pattern in (pattern, "any") and e.fault_kind == kind
                and e.target in (target, "any")]
    # An option some source says changes this scenario's outcome must be matched by the entry
    # chosen: a run with heartbeats on a pair no heartbeat entry covers gets no promise, not the
    # heartbeat-off one.
    relevant = options & frozenset().union(*(e.options for e in scenario))
    best, best_rank = None, None
    for e in scenario:
        if not relevant <= e.options <= options or not _version_matches(e.libzmq, libzmq_version):
            continue
        rank = (mixed and "->" in e.libzmq, len(e.options), e.pattern == pattern, e.libzmq != "any")
        if best_rank is None or rank > best_rank:
            best, best_rank = e, rank
    return best


def _losses(fo: dict, pattern: str) -> tuple:
    """(inside, outside) losses; join losses count as outside except on slow-joiner patterns."""
    join = 0 if pattern in JOIN_LOSSY_PATTERNS else fo.get("lost_join", 0)
    return fo.get("lost_inside", 0), fo.get("lost_outside", 0) + join


def judge(expectation: Expectation, outcome: Optional[dict], run_outcome: Optional[str] = None) -> tuple:
    """("expected" | "unexpected", reason) for a FaultOutcome's dict against its expectation.

    `run_outcome` is the run's own outcome (ok/lost/deadlock/...); it defaults to the one the
    FaultOutcome carries."""
    if outcome is None:
        return "unexpected", "no fault window in the run: nothing to judge"
    run = run_outcome if run_outcome is not None else outcome.get("run_outcome")
    want = expectation.expected
    windows = outcome.get("windows") or ()
    inside, outside = _losses(outcome, expectation.pattern)
    never = [k for w in windows for k in w.get("never_recovered", ())]
    if want == "unsupported":
        if run in ("unsupported", "error"):
            return "expected", "the build lacks the option (run %s)" % run
        return "unexpected", "the option was expected to be missing, but the run was %s" % run
    if run in ("error", "unsupported"):
        return "unexpected", "the run ended %s, so the fault's effect is unknown" % run
    if want == "hang":
        if run == "deadlock" or never:
            return "expected", "hung as documented (%s)" % ("deadlock" if run == "deadlock"
                                                          else "never recovered: " + ", ".join(never))
        return "unexpected", "expected a hang, but every thread recovered (run %s)" % run
    if want == "hang-if-waiting":
        return _judge_waiting(windows, never, outside, run)
    if want == "stall":
        moving = sum(w.get("delivered_during", 0) for w in windows)
        if moving:
            return "unexpected", "expected a stall, but %d pings arrived while the fault lasted" % moving
        return "expected", "nothing arrived while the fault lasted"
    if want == "no-loss":
        if inside or outside:
            return "unexpected", "expected no loss, %d lost inside and %d outside the window" % (inside, outside)
        if run == "deadlock":
            return "unexpected", "expected no loss, but the run deadlocked"
        return "expected", "nothing lost"
    if outside:
        return "unexpected", "%d lost outside the fault window (%d inside)" % (outside, inside)
    if want == "loss-in-window":
        return "expected", "%d lost, all inside the window" % inside
    if want == "bounded-loss":
        if never or run == "deadlock":
            return "unexpected", "loss stayed inside the window but %s" % (
                "thread(s) %s never recovered" % ", ".join(never) if never else "the run deadlocked")
        return "expected", "%d lost inside the window, every thread recovered" % inside
    raise ValueError("unknown expected outcome %r" % want)


def _judge_waiting(windows, never, outside: int, run: str) -> tuple:
    """hang-if-waiting: the threads waiting for a reply when the fault struck hang, no other."""
    waiting = [k for w in windows for k in w.get("waiting_at_fault", ())]
    after = [k for w in windows for k in w.get("hung_after", ())]
    if after:
        return "unexpected", "thread(s) %s hung on a request sent after the fault struck" % ", ".join(after)
    others = [k for k in never if k not in waiting]
    if others:
        return "unexpected", "thread(s) %s never recovered with no request out at the fault" % ", ".join(others)
    if outside:
        return "unexpected", "%d lost outside the fault window" % outside
    if run == "deadlock" and not waiting:
        return "unexpected", "the run deadlocked, but no thread was waiting for a reply from before the fault"
    if waiting:
        return "expected", "thread(s) %s, waiting for a reply when the fault struck, hung for good; " \
                           "the others recovered" % ", ".join(waiting)
    return "expected", "no request was out when the fault struck: every thread recovered"
