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
    reports one, else the bare TCP/IPC connection. Stamped `t`, it happened in [t - lag, t]."""
    __slots__ = ("t", "lag", "before", "after", "close", "at")

    def __init__(self, t, lag, handshake):
        self.t, self.lag = t, lag
        self.before = "before its handshake completed" if handshake else "before it connected"
        self.after = "after its handshake completed" if handshake else "after it connected"
        self.close = "too close to its handshake" if handshake else "too close to its connection"
        self.at = "handshake" if handshake else "connected"


def stamp_lag(timeline: dict) -> float:
    """How late an event's stamp may be (0 when not recorded): the collector's own worst pass
    (collector_delay_ms) or, larger when busy senders hold the GIL, the lateness the harness
    measured at each connect (monitor_lag_ms)."""
    known = [number(timeline.get(k)) for k in ("collector_delay_ms", "monitor_lag_ms")]
    return max([0.0] + [x for x in known if x is not None])


def link_time(timeline: dict, thread: int):
    """When the monitor stamped the thread's connection up: its first sender-side
    HANDSHAKE_SUCCEEDED, else its first CONNECTED; None when neither was recorded."""
    t = _first_event(timeline, thread, "HANDSHAKE_SUCCEEDED")
    return t if t is not None else _first_event(timeline, thread, "CONNECTED")


def _link(timeline: dict, thread: int):
    t = link_time(timeline, thread)
    if t is None:
        return None
    handshake = _first_event(timeline, thread, "HANDSHAKE_SUCCEEDED") is not None
    return _Link(t, stamp_lag(timeline), handshake)


def _no_link(timeline: dict, transport) -> str:
    monitor = timeline.get("monitor")
    if monitor is not None and monitor != "on":
        return "no connection event recorded (monitor %s)" % monitor
    if transport == "inproc":
        return "no connection event recorded (inproc has none)"
    return "no connection event recorded"


def _since_connect(thread: dict, link) -> str:
    connect = number(thread.get("connect_ms"))
    when = "at %s ms since t0" % _ms(link.t) if connect is None else "+%s ms after connect" % _ms(link.t - connect)
    return when + _late(link)


def _late(link) -> str:
    return ", stamped up to %s ms late" % _ms(link.lag) if link.lag >= 0.05 else ""


def _send_times(thread: dict) -> list:
    return [number(x) for x in _list(thread.get("send_ms"))]


def _when(sent: float, link) -> str:
    """A send against the connection's stamp t: surely before the connection if earlier than
    t - lag, surely after if not earlier than t, else too close to tell."""
    if sent < link.t - link.lag:
        return "before"
    return "after" if sent >= link.t else "close"


def _tail_when(thread: dict, sends: list, link):
    """The same for the seqs past the kept send times, or None when the timeline cannot tell.
    Only the first 64 send times are kept, but one thread sends in order: a later seq went
    out no earlier than the last one kept and no later than the thread's last send."""
    last = number(thread.get("last_send_ms"))
    known = [s for s in sends if s is not None]
    low = known[-1] if known else None
    if last is not None and _when(last, link) == "before":
        return "before"             # the last send of all was before
    if low is not None and _when(low, link) == "after":
        return "after"              # the last kept one was already after
    if last is not None and low is not None:
        return "close"              # between two sends that are both too close to tell
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


GROUPS = ("before", "close", "after", None)


def _split(thread: dict, first: int, last: int, link) -> dict:
    """The lost seqs by when they were sent against the connection (GROUPS; None: send time
    not recorded), each a (lo, hi) range. Sends are in order, so the groups are consecutive."""
    sends = _send_times(thread)
    groups = {g: [] for g in GROUPS}
    for seq in range(first, min(last, len(sends)) + 1):
        sent = sends[seq - 1]
        groups[None if sent is None else _when(sent, link)].append(seq)
    if last > len(sends):
        groups[_tail_when(thread, sends, link)] += [max(first, len(sends) + 1), last]
    return {g: (seqs[0], seqs[-1]) for g, seqs in groups.items() if seqs}


def _none_arrived(tid: int, lost: tuple, thread: dict, link) -> str:
    head = "thread %d: none of %s arrived" % (tid, _seqs(lost[0], lost[1]))
    connect = number(thread.get("connect_ms"))
    last = number(thread.get("last_send_ms"))
    if connect is not None and last is not None:
        # When the whole burst went out says more than any stamp: a PUB that sent all of
        # it within a millisecond of zmq_connect had no subscriber yet.
        head += " (all sent by +%s ms)" % _ms(last - connect)
    if link is None:
        return head
    when = "+%s ms" % _ms(link.t - connect) if connect is not None else "%s ms since t0" % _ms(link.t)
    late = " (stamped up to %s ms late)" % _ms(link.lag) if link.lag >= 0.05 else ""
    return "%s; %s at %s%s" % (head, link.at, when, late)


def _lost_first(tid: int, lost: tuple, thread: dict, link, pubsub: bool) -> str:
    first, last, got = lost
    groups = _split(thread, first, last, link)
    parts = []
    if "before" in groups:
        parts.append("%s sent %s (%s)" % (_seqs(*groups["before"]), link.before, _since_connect(thread, link)))
    if "close" in groups:
        text = "%s sent %s to tell which came first" % (_seqs(*groups["close"]), link.close)
        if "before" not in groups:
            text += " (%s)" % _since_connect(thread, link)
        parts.append(text)
    if "after" in groups:
        parts.append(_sent_after(groups["after"], thread, link, pubsub))
    if None in groups:
        text = "%s lost, send times not recorded" % _seqs(*groups[None])
        if len(groups) == 1:
            text += " (%s %s)" % (link.at, _since_connect(thread, link))
        parts.append(text)
    return "thread %d: %s; first received #%d" % (tid, ", ".join(parts), got)


def _sent_after(seqs: tuple, thread: dict, link, pubsub: bool) -> str:
    sends = _send_times(thread)
    sent = sends[seqs[0] - 1] if seqs[0] <= len(sends) else None
    delay = _delay(sent - link.t) + " " if sent is not None else ""
    why = " (the subscription had not reached the PUB yet)" if pubsub else ""
    return "%s lost although sent %s%s%s" % (_seqs(*seqs), delay, link.after, why)


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
