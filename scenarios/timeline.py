"""Reading a run's timeline (docs/topology.md, "The timeline"): why a thread lost its first
pings, in one line, and which monitor events a tcp/ipc run never saw.

Pure standard library (no zmq): it runs inside the target images, on every Python they
carry (3.9 and later), and the lab's HTML report imports it too. Every reader here takes the
timeline as found in a report and tolerates missing keys and nulls: an explanation is a
courtesy on top of the evidence and must never turn a run into an error.
"""
from __future__ import annotations

# libzmq's socket-monitor events, as include/zmq.h defines them (github.com/zeromq/libzmq,
# checked at v4.1.6, v4.2.5, v4.3.0-v4.3.5 and master). The first eleven exist since 4.0;
# the HANDSHAKE_* four are stable since 4.3.0 (in 4.2.x only under ZMQ_BUILD_DRAFT_API,
# which is why 4.2.5 stock builds never emit HANDSHAKE_SUCCEEDED); PIPES_STATS is draft
# (4.3.2+, ZMQ_EVENT_ALL_V2) and listed only so a draft build's event gets its name.
EVENTS = {
    0x0001: "CONNECTED",
    0x0002: "CONNECT_DELAYED",
    0x0004: "CONNECT_RETRIED",
    0x0008: "LISTENING",
    0x0010: "BIND_FAILED",
    0x0020: "ACCEPTED",
    0x0040: "ACCEPT_FAILED",
    0x0080: "CLOSED",
    0x0100: "CLOSE_FAILED",
    0x0200: "DISCONNECTED",
    0x0400: "MONITOR_STOPPED",
    0x0800: "HANDSHAKE_FAILED_NO_DETAIL",
    0x1000: "HANDSHAKE_SUCCEEDED",
    0x2000: "HANDSHAKE_FAILED_PROTOCOL",
    0x4000: "HANDSHAKE_FAILED_AUTH",
    0x10000: "PIPES_STATS",
}

# What every sender socket of a tcp/ipc run should report once it is connected (libzmq >= 4.3);
# inproc has no engine, hence no connection events at all.
EXPECTED_ON = ("tcp", "ipc")
EXPECTED_EVENTS = ("CONNECTED", "HANDSHAKE_SUCCEEDED")

DASH = "\u2013"     # en dash, for seq ranges: #1–#16


def event_name(n) -> str:
    """The name of a monitor event number; a name passes through (reports store names)."""
    if isinstance(n, str):
        return n
    try:
        return EVENTS.get(int(n), "EVENT_0x%X" % int(n))
    except (TypeError, ValueError):
        return "EVENT_%s" % (n,)


# ---- small readers: a report is data from elsewhere, so every access is checked ------------

def number(x):
    """A finite number as float, anything else (None, str, bool, NaN) as None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        return None
    return float(x)


def _int(x):
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _list(x):
    return x if isinstance(x, list) else []


def _ms(x: float) -> str:
    """One decimal, and never '-0.0' (a rounding artefact, not a direction)."""
    text = "%.1f" % x
    return "0.0" if text == "-0.0" else text


def _delay(ms: float) -> str:
    """A delay that rounds to nothing still was one: '<0.1 ms', not '0.0 ms'."""
    return "%s ms" % _ms(ms) if ms >= 0.05 else "<0.1 ms"


def _seqs(first: int, last: int) -> str:
    return "#%d" % first if first == last else "#%d%s#%d" % (first, DASH, last)


def _threads_by_id(timeline: dict) -> dict:
    out = {}
    for t in _list(timeline.get("threads")):
        if isinstance(t, dict) and _int(t.get("id")) is not None:
            out.setdefault(t["id"], t)
    return out


def _first_event(timeline: dict, thread: int, name: str, side: str = "sender"):
    """Earliest t_ms of event `name` on one thread's socket(s), or None."""
    times = [number(e.get("t_ms")) for e in _list(timeline.get("events"))
             if isinstance(e, dict) and e.get("side") == side and e.get("thread") == thread
             and event_name(e.get("event")) == name]
    times = [t for t in times if t is not None]
    return min(times) if times else None


# ---- explain() ------------------------------------------------------------------------------

class _Link:
    """When a thread's connection was up, as the monitor saw it: the handshake if the libzmq
    reports one, else the bare TCP/IPC connection."""
    __slots__ = ("t", "before", "after", "at")

    def __init__(self, t, handshake):
        self.t = t
        self.before = "before its handshake completed" if handshake else "before it connected"
        self.after = "after its handshake completed" if handshake else "after it connected"
        self.at = "handshake" if handshake else "connected"


def _link(timeline: dict, thread: int):
    t = _first_event(timeline, thread, "HANDSHAKE_SUCCEEDED")
    if t is not None:
        return _Link(t, True)
    t = _first_event(timeline, thread, "CONNECTED")
    return _Link(t, False) if t is not None else None


def _no_link(timeline: dict, transport) -> str:
    monitor = timeline.get("monitor")
    if monitor is not None and monitor != "on":
        return "no connection event recorded (monitor %s)" % monitor
    if transport == "inproc":
        return "no connection event recorded (inproc has none)"
    return "no connection event recorded"


def _since_connect(thread: dict, t: float) -> str:
    connect = number(thread.get("connect_ms"))
    if connect is None:
        return "at %s ms since t0" % _ms(t)
    return "+%s ms after connect" % _ms(t - connect)


def _send_times(thread: dict) -> list:
    return [number(x) for x in _list(thread.get("send_ms"))]


def _tail_before(thread: dict, sends: list, t: float):
    """Were the seqs past the kept send times sent before t? True/False, or None when the
    timeline cannot tell. Only the first 64 send times are kept, but one thread sends in
    order: a later seq went out no earlier than the last kept one and no later than the
    thread's last send."""
    last = number(thread.get("last_send_ms"))
    if last is not None and last < t:
        return True
    known = [s for s in sends if s is not None]
    if known and known[-1] >= t:
        return False
    return None


def lost_at_start(row: dict):
    """(first lost seq, last lost seq, first received seq or None), or None when the thread
    did not lose its first pings. A thread that received nothing lost all it completed."""
    gap = row.get("first_gap")
    completed = _int(row.get("completed")) or 0
    if row.get("received") == 0 and completed > 0:
        first = gap.get("expected") if isinstance(gap, dict) else 1
        first = _int(first) or 1
        return (first, completed, None) if first <= completed else None
    if isinstance(gap, dict) and gap.get("expected") == 1 and _int(gap.get("got")):
        return (1, gap["got"] - 1, gap["got"])
    return None


def _split(thread: dict, first: int, last: int, t: float):
    """The lost seqs sent before t, after it, and of unknown send time, each a (lo, hi) range
    or None. Sends are in order, so the three are consecutive in that order."""
    sends = _send_times(thread)
    groups = {True: [], False: [], None: []}
    for seq in range(first, min(last, len(sends)) + 1):
        sent = sends[seq - 1]
        groups[None if sent is None else sent < t].append(seq)
    if last > len(sends):
        groups[_tail_before(thread, sends, t)] += [max(first, len(sends) + 1), last]
    return tuple((g[0], g[-1]) if g else None for g in (groups[True], groups[False], groups[None]))


def _none_arrived(tid: int, lost: tuple, thread: dict, link) -> str:
    head = "thread %d: none of %s arrived" % (tid, _seqs(lost[0], lost[1]))
    if link is None:
        return head
    connect = number(thread.get("connect_ms"))
    when = "+%s ms" % _ms(link.t - connect) if connect is not None else "%s ms since t0" % _ms(link.t)
    return "%s; %s at %s" % (head, link.at, when)


def _lost_first(tid: int, lost: tuple, thread: dict, link, pubsub: bool) -> str:
    first, last, got = lost
    tail = "; first received #%d" % got
    before, after, unknown = _split(thread, first, last, link.t)
    parts = []
    if before:
        parts.append("%s sent %s (%s)" % (_seqs(*before), link.before, _since_connect(thread, link.t)))
    if after:
        sends = _send_times(thread)
        sent = sends[after[0] - 1] if after[0] <= len(sends) else None
        delay = _delay(sent - link.t) + " " if sent is not None else ""
        why = " (the subscription had not reached the PUB yet)" if pubsub else ""
        parts.append("%s lost although sent %s%s%s" % (_seqs(*after), delay, link.after, why))
    if unknown:
        text = "%s lost, send times not recorded" % _seqs(*unknown)
        if not before and not after:
            text += " (%s %s)" % (link.at, _since_connect(thread, link.t))
        parts.append(text)
    return "thread %d: %s%s" % (tid, ", ".join(parts), tail)


def _line(row: dict, lost: tuple, timeline: dict, pattern, transport) -> str:
    tid = row["id"]
    thread = _threads_by_id(timeline).get(tid, {})
    link = _link(timeline, tid)
    if lost[2] is None:
        line = _none_arrived(tid, lost, thread, link)
        return line if link is not None else "%s; %s" % (line, _no_link(timeline, transport))
    if link is None:
        return "thread %d: %s lost, %s; first received #%d" % (
            tid, _seqs(lost[0], lost[1]), _no_link(timeline, transport), lost[2])
    return _lost_first(tid, lost, thread, link, pattern == "pubsub")


def explain(timeline: dict, rows: list, limit: int = 3, pattern: str | None = None,
            transport: str | None = None) -> list:
    """One line per thread that lost its first pings, saying when they were sent relative to
    the thread's connection; worst (most lost) first, at most `limit`, then '(+N more threads)'.

    `rows` are the run's per-thread rows (scenarios/evidence.thread_rows). `pattern` names the
    PUB/SUB case (pings lost after the handshake: the subscription was still on its way);
    `transport` only words a missing event ("inproc has none").
    """
    # Without per-thread times there is nothing to explain with; the rows already say what
    # was lost (evidence.classify).
    if not isinstance(timeline, dict) or not _threads_by_id(timeline):
        return []
    found = []
    for row in _list(rows):
        if isinstance(row, dict) and _int(row.get("id")) is not None:
            lost = lost_at_start(row)
            if lost is not None:
                found.append((lost, row))
    found.sort(key=lambda f: (-(f[0][1] - f[0][0] + 1), f[1]["id"]))
    limit = max(int(limit), 0)
    lines = [_line(row, lost, timeline, pattern, transport) for lost, row in found[:limit]]
    if len(found) > limit:
        more = len(found) - limit
        lines.append("(+%d more thread%s)" % (more, "" if more == 1 else "s"))
    return lines


# ---- unseen() -------------------------------------------------------------------------------

def unseen(timeline: dict, transport: str) -> list:
    """Events every tcp/ipc sender should report that none did (e.g. HANDSHAKE_SUCCEEDED on
    libzmq 4.2.5). Empty when nothing could be seen: inproc, monitor off, no sender threads."""
    if not isinstance(timeline, dict) or transport not in EXPECTED_ON:
        return []
    if timeline.get("monitor") != "on" or not _threads_by_id(timeline):
        return []
    seen = {event_name(e.get("event")) for e in _list(timeline.get("events"))
            if isinstance(e, dict) and e.get("side") == "sender"}
    return [name for name in EXPECTED_EVENTS if name not in seen]
