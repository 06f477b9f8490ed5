"""What a fault did to a run: loss inside and outside its window, recovery, threads that never came back.

Pure: a run report (a dict, `zmqlab.run/1` with the fault blocks below) in, a frozen
`FaultOutcome` out; no I/O, no zmq, no import of lab/faults.py (its writer owns the
`Fault`/`FaultWindow` types; this module reads only the report's plain data).

Report blocks read (all on the receiver's clock, ns):
  report["faults"]  [{"kind", "target", "start_ns", "end_ns" | None, "undone", "error"}, ...]
  report["pings"]   {"clock": "receiver", "threads": [{"id", "incarnation"?, "sent_ns": [...],
                     "recv_ns": [...]}]}  -- index i is seq i+1; None = never sent / never received
  report["params"]["stall"], report["stall"]["stacks"], report["outcome"], report["timeline"]["t0_ns"]

How a lost ping is placed (a seq sent, never received):
  inside   sent in [start - grace, end + grace] of a window (the first such window). The grace is
           an in-flight allowance: a ping sent just before the fault struck may still have been in
           a socket queue or the kernel when it did, and one sent just after the heal may still
           have been behind the fault's backlog. It is 4 x the run's own one-way latency (the
           median over pings delivered before the first fault; the drain window's factor, see
           docs/topology.md), and at least GRACE_MIN_NS, because on a quiet loopback the latency is
           tens of microseconds while a heal (a sidecar deleting its rules, docker unpause) is
           stamped by another process with millisecond jitter.
           A thread's window also runs on while its own backlog from the fault is still being
           delivered (to the receive time of the last of its pings sent in [start, heal]): a
           queue at its HWM stays in its mute state until it drains, after the fault ("dropped
           until the mute state ends", zmq_socket(3) on PUB). Measured: a paused SUB's PUB
           pipe drained 197 ms after the unpause, and 109 pings sent meanwhile were dropped.
  join     outside every window, and before the thread's first delivered ping: its connection
           was not up yet (the PUB/SUB slow joiner; the lab's baseline loss, not the fault's).
  outside  every other lost ping.
A ping sent in [start, heal] and received after the heal (below) is counted apart as `late`: delayed, not lost.

Refused sends are not lost. Under --nowait a send at the HWM fails with EAGAIN (ZMQ_XPUB_NODROP;
a PUSH in its mute state): the seq was never sent, but the ping log has its send time (stamped
just before the call) and no receive time, like a lost one. Which seqs were refused: the ping
log's `refused` list when a thread has one; else the run's evidence row for the thread
(report["threads"]: `would_block` refusals, `missing` real losses, refused ones aside): when it
lost none, every seq of it that never arrived was refused, exactly. A thread with both cannot be
told apart seq by seq: its refusals stay among its lost pings and are counted in
`refused_unplaced`.

Recovery of a thread: from the heal to the first ping of that thread received at or after it.
The heal is when undoing began (`lifting_ns`: the unpause, the rules' removal, the restart),
else end_ns: undoing itself can take hundreds of ms (an unpause returned after 137–437 ms on a
loaded machine, with the whole backlog delivered before it did), and measured from its end a
recovery would read ~0 ms and the backlog would not count as late.
For a kill of the sender the killed incarnation sends nothing more; recovery is to the first
ping of the next incarnation's thread with the same id. A thread "needed" recovery when it had
pings sent from the window's start on, or pings it never sent. It "never recovered" when nothing
of it arrived within the run's stall window after the heal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import median
from typing import Optional

# What judged() may say of a run's fault; lab/compare.py counts runs by these, and the
# baseline schema requires each (tests/test_baseline.py holds the three together).
JUDGEMENTS = ("expected", "unexpected", "no-promise", "not-applied")
GRACE_MIN_NS = 50_000_000          # 50 ms: the floor of the in-flight allowance (see above)
LATENCY_FACTOR = 4                 # the drain window's factor over the one-way latency
DEFAULT_STALL_S = 2.0              # the harness's default --stall
TARGET_ABBREV = {"receiver": "rx", "sender": "tx"}


@dataclass(frozen=True)
class ThreadPings:
    id: int
    incarnation: int
    sent_ns: tuple
    recv_ns: tuple

    @property
    def key(self) -> str:
        return str(self.id) if self.incarnation == 1 else "%d/%d" % (self.id, self.incarnation)

    def first_recv_ns(self) -> Optional[int]:
        got = [r for r in self.recv_ns if r is not None]
        return min(got) if got else None


@dataclass(frozen=True)
class Window:
    kind: str
    target: str
    start_ns: int
    end_ns: Optional[int]          # None: never undone
    undone: bool
    error: Optional[str]
    effective_ns: Optional[int] = None   # applying returned: surely in effect from here ...
    lifting_ns: Optional[int] = None     # ... to here, when undoing began


@dataclass(frozen=True)
class WindowOutcome:
    kind: str
    target: str
    start_ns: int
    end_ns: Optional[int]
    undone: bool
    error: Optional[str]
    lost_inside: int
    lost_inside_by_thread: tuple   # ((thread key, ((first seq, last seq), ...)), ...)
    late: int                      # sent in [start, heal], received after the heal
    delivered_during: int          # received inside (start + grace, end): traffic did not stop
    recovery_ms: tuple             # ((thread key, ms), ...) for threads that needed and got it
    never_recovered: tuple         # thread keys
    worst_thread: Optional[str]
    worst_recovery_ms: Optional[float]
    # REQ threads stuck for good waiting for a reply (state "wait-reply"): those whose request
    # was sent before the fault struck (it died with the peer: zguide's "hangs forever"), and
    # those whose request came later (the peer was back: nothing excuses that)
    waiting_at_fault: tuple = ()
    hung_after: tuple = ()


@dataclass(frozen=True)
class FaultOutcome:
    windows: tuple                 # WindowOutcome per fault window, in report order
    lost_inside: int
    lost_outside: int
    lost_join: int
    lost_outside_by_thread: tuple
    grace_ms: float
    latency_ms: Optional[float]
    stall_s: float
    heartbeat: Optional[bool]      # None: the report does not say
    stacks: tuple                  # names under report["stall"]["stacks"] when the run stalled
    run_outcome: Optional[str]
    t0_ns: int
    refused: int = 0               # EAGAIN refusals (--nowait) left out of every loss count
    refused_unplaced: int = 0      # refusals of threads that also lost pings: among the lost

    def to_dict(self) -> dict:
        return asdict(self)

    def explain(self) -> str:
        return explain(self)


def windows_of(report: dict) -> tuple:
    return tuple(Window(kind=f["kind"], target=f["target"], start_ns=int(f["start_ns"]),
                        end_ns=None if f.get("end_ns") is None else int(f["end_ns"]),
                        undone=bool(f.get("undone")), error=f.get("error"),
                        effective_ns=f.get("effective_ns"), lifting_ns=f.get("lifting_ns"))
                 for f in report.get("faults") or ())


def threads_of(report: dict) -> tuple:
    rows = (report.get("pings") or {}).get("threads") or ()
    return tuple(ThreadPings(id=int(t["id"]), incarnation=int(t.get("incarnation", 1)),
                             sent_ns=tuple(t.get("sent_ns") or ()), recv_ns=tuple(t.get("recv_ns") or ()))
                 for t in rows)


def _pairs(thread: ThreadPings):
    """(seq, sent_ns, recv_ns) for each seq; a recv list shorter than sent means not received."""
    for i, sent in enumerate(thread.sent_ns):
        recv = thread.recv_ns[i] if i < len(thread.recv_ns) else None
        yield i + 1, sent, recv


def latency_ns(threads, first_start_ns: Optional[int]) -> Optional[float]:
    """Median one-way latency of pings delivered before the first fault (all delivered if none)."""
    before = [r - s for t in threads for _, s, r in _pairs(t)
              if s is not None and r is not None and (first_start_ns is None or s < first_start_ns)]
    if not before:
        return None
    return float(median(before))


def grace_ns(latency: Optional[float]) -> int:
    return max(GRACE_MIN_NS, int(LATENCY_FACTOR * (latency or 0)))


def seq_ranges(seqs) -> tuple:
    """(1, 2, 3, 7) -> ((1, 3), (7, 7))."""
    out = []
    for n in sorted(seqs):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return tuple((a, b) for a, b in out)


def _inside(sent: int, w: Window, grace: int, drained: Optional[int] = None) -> bool:
    end = float("inf") if w.end_ns is None else max(w.end_ns + grace, drained or 0)
    return w.start_ns - grace <= sent <= end


def _drained(t: ThreadPings, w: Window) -> Optional[int]:
    """When this thread's backlog from window `w` was delivered: the last receive time of its
    pings sent from the start to the heal and received after the heal (None: no backlog)."""
    if w.end_ns is None:
        return None
    heal = _heal(w)
    late = [r for _, s, r in _pairs(t) if s is not None and r is not None and w.start_ns <= s <= heal < r]
    return max(late) if late else None


def _stall_s(report: dict) -> float:
    return float((report.get("params") or {}).get("stall") or DEFAULT_STALL_S)


def heartbeat_of(report: dict) -> Optional[bool]:
    """Whether ZMTP heartbeats were on; the runner's param may be a bool or an interval in ms."""
    params = report.get("params") or {}
    if "sockopts" in params or "ping_log" in params:      # the harness's own params (options.py)
        return bool((params.get("sockopts") or {}).get("heartbeat"))
    for key in ("heartbeat", "heartbeat_ivl", "heartbeat_ivl_ms"):
        if key in params:
            return bool(params[key])
    return None


def _stacks(report: dict) -> tuple:
    stall = report.get("stall") or {}
    return tuple(sorted((stall.get("stacks") or {}).keys()))


def _t0(report: dict, threads, windows) -> int:
    t0 = (report.get("timeline") or {}).get("t0_ns")
    if t0 is not None:
        return int(t0)
    sent = [s for t in threads for s in t.sent_ns if s is not None]
    if sent:
        return min(sent)
    return windows[0].start_ns if windows else 0


def _heal(w: Window) -> int:
    """When undoing the fault began (see the module's docstring), else when it ended."""
    return w.lifting_ns if w.lifting_ns is not None and w.end_ns is not None else w.end_ns


def _incarnation_after(windows, index: int) -> int:
    """The sender incarnation that follows window `index` (1 + sender kills up to and including it)."""
    return 1 + sum(1 for w in windows[:index + 1] if w.kind == "kill" and w.target == "sender")


def _recovery(w: Window, index: int, windows, threads, stall_ns: int):
    """(((key, ms), ...), never-recovered keys) for one window; nothing when it was never undone."""
    if w.end_ns is None:
        return (), ()
    heal = _heal(w)
    sender_kill = w.kind == "kill" and w.target == "sender"
    incarnation = _incarnation_after(windows, index) if sender_kill else None
    by_key = {(t.id, t.incarnation): t for t in threads}
    recovered, never = [], []
    for t in threads:
        if sender_kill and t.incarnation != incarnation - 1:
            continue
        if not sender_kill and any(u.id == t.id and u.incarnation > t.incarnation
                                   and u.sent_ns and u.sent_ns[0] is not None and u.sent_ns[0] <= w.start_ns
                                   for u in threads):
            continue                            # a later incarnation had already taken over
        pending = any(s is None or s >= w.start_ns for s in t.sent_ns)
        if not pending:
            continue                            # everything was sent before the fault: nothing to recover
        source = by_key.get((t.id, incarnation)) if sender_kill else t
        key = source.key if source is not None else t.key
        after = [r for r in (source.recv_ns if source else ()) if r is not None and r >= heal]
        first = min(after) if after else None
        if first is None or first - heal > stall_ns:
            never.append(key)
        else:
            recovered.append((key, round((first - heal) / 1e6, 3)))
    return tuple(recovered), tuple(never)


WAITING = "wait-reply"              # scenarios/reqrep.py: a REQ blocked in the receive of its reply


def _waiting(w: Window, report: dict, threads, grace: int) -> tuple:
    """(waiting at the fault, hung after it): thread keys stuck in WAITING at the end, split by
    when their outstanding request (seq = attempted) was sent: up to when the fault was surely
    in effect (a kill takes ~100 ms to land: a request sent meanwhile reached a peer about to
    die), plus the in-flight grace."""
    by_key = {(t.id, t.incarnation): t for t in threads}
    struck = max(w.start_ns, w.effective_ns or w.start_ns) + grace
    waiting, after = [], []
    for row in report.get("threads") or ():
        if row.get("state") != WAITING:
            continue
        t = by_key.get((row["id"], row.get("incarnation", 1)))
        seq = row.get("attempted") or 0
        sent = t.sent_ns[seq - 1] if t is not None and 0 < seq <= len(t.sent_ns) else None
        key = t.key if t is not None else str(row["id"])
        (waiting if sent is not None and sent <= struck else after).append(key)
    return tuple(waiting), tuple(after)


def refused_seqs(report: dict, threads) -> tuple:
    """({thread key: frozenset of refused seqs}, unplaced refusals): see the module's docstring."""
    rows = {"%s" % r["id"] if r.get("incarnation", 1) == 1 else "%d/%d" % (r["id"], r["incarnation"]): r
            for r in report.get("threads") or () if "id" in r}
    listed = {}
    for t in (report.get("pings") or {}).get("threads") or ():
        if t.get("refused") is not None:
            k = int(t.get("incarnation", 1))
            listed[str(t["id"]) if k == 1 else "%d/%d" % (t["id"], k)] = frozenset(t["refused"])
    out, unplaced = {}, 0
    for t in threads:
        if t.key in listed:
            out[t.key] = listed[t.key]
            continue
        row = rows.get(t.key) or {}
        refused = row.get("would_block") or 0
        if not refused:
            continue
        unseen = frozenset(q for q, sent, recv in _pairs(t) if sent is not None and recv is None)
        if row.get("missing") == 0 and len(unseen) == refused:
            out[t.key] = unseen
        else:
            unplaced += refused
    return out, unplaced


def analyse(report: dict) -> Optional[FaultOutcome]:
    """The FaultOutcome of one run report, or None when the run had no fault."""
    windows = windows_of(report)
    if not windows:
        return None
    threads = threads_of(report)
    lat = latency_ns(threads, min(w.start_ns for w in windows))
    grace = grace_ns(lat)
    stall_s = _stall_s(report)
    stall_ns = int(stall_s * 1e9)

    inside = [dict() for _ in windows]          # window -> thread key -> [seq]
    late = [0] * len(windows)
    during = [0] * len(windows)
    outside, join = {}, 0
    refused, unplaced = refused_seqs(report, threads)
    heals = [_heal(w) for w in windows]
    for t in threads:
        first = t.first_recv_ns()
        mine = refused.get(t.key, frozenset())
        # by seq, not send time: a killed incarnation's lost seqs carry only an upper bound of
        # their send time (the next delivered ping's), equal to it, never below
        first_seq_delivered = min((q for q, _, r in _pairs(t) if r is not None), default=None)
        drained = [_drained(t, w) for w in windows]
        for seq, sent, recv in _pairs(t):
            if sent is None:
                continue
            for i, w in enumerate(windows):
                if recv is not None and w.end_ns is not None and w.start_ns <= sent <= heals[i] < recv:
                    late[i] += 1
                # surely in effect: from when applying returned to when undoing began (the
                # injector's effective_ns/lifting_ns; else the window's edges, less the grace)
                on, off = w.effective_ns or w.start_ns + grace, w.lifting_ns or w.end_ns
                if recv is not None and recv > on and (off is None or recv < off):
                    during[i] += 1
            if recv is not None or seq in mine:
                continue
            hit = next((i for i, w in enumerate(windows) if _inside(sent, w, grace, drained[i])), None)
            if hit is not None:
                inside[hit].setdefault(t.key, []).append(seq)
            elif first is None or (first_seq_delivered is not None and seq < first_seq_delivered):
                join += 1
            else:
                outside.setdefault(t.key, []).append(seq)

    outcomes = []
    for i, w in enumerate(windows):
        recovered, never = _recovery(w, i, windows, threads, stall_ns)
        worst = max(recovered, key=lambda kv: kv[1]) if recovered else None
        waiting, hung_after = _waiting(w, report, threads, grace)
        outcomes.append(WindowOutcome(
            kind=w.kind, target=w.target, start_ns=w.start_ns, end_ns=w.end_ns, undone=w.undone,
            error=w.error,
            lost_inside=sum(len(v) for v in inside[i].values()),
            lost_inside_by_thread=tuple((k, seq_ranges(v)) for k, v in inside[i].items()),
            late=late[i], delivered_during=during[i],
            recovery_ms=recovered, never_recovered=never,
            worst_thread=worst[0] if worst else None, worst_recovery_ms=worst[1] if worst else None,
            waiting_at_fault=waiting, hung_after=hung_after))
    return FaultOutcome(
        windows=tuple(outcomes),
        lost_inside=sum(o.lost_inside for o in outcomes),
        lost_outside=sum(len(v) for v in outside.values()),
        lost_join=join,
        lost_outside_by_thread=tuple((k, seq_ranges(v)) for k, v in outside.items()),
        grace_ms=round(grace / 1e6, 3), latency_ms=None if lat is None else round(lat / 1e6, 3),
        stall_s=stall_s, heartbeat=heartbeat_of(report), stacks=_stacks(report),
        run_outcome=report.get("outcome"), t0_ns=_t0(report, threads, windows),
        refused=sum(len(v) for v in refused.values()), refused_unplaced=unplaced)


def _ranges_text(ranges) -> str:
    return ", ".join("#%d" % a if a == b else "#%d–#%d" % (a, b) for a, b in ranges)


def _threads_text(by_thread, most: int = 2) -> str:
    parts = ["thread %s: %s" % (k, _ranges_text(r)) for k, r in by_thread[:most]]
    if len(by_thread) > most:
        parts.append("+%d more threads" % (len(by_thread) - most))
    return "; ".join(parts)


def explain_window(o: FaultOutcome, w: WindowOutcome) -> str:
    start = (w.start_ns - o.t0_ns) / 1e9
    span = ("%.2f–%.2f s" % (start, (w.end_ns - o.t0_ns) / 1e9) if w.end_ns is not None
            else "from %.2f s, never undone" % start)
    text = "%s %s %s: " % (w.kind, TARGET_ABBREV.get(w.target, w.target), span)
    text += "%d lost inside" % w.lost_inside
    if w.lost_inside_by_thread:
        text += " (%s)" % _threads_text(w.lost_inside_by_thread)
    if w.late:
        text += ", %d sent inside delivered late" % w.late
    if w.end_ns is None:
        pass                                    # never undone: there is nothing to recover from
    elif w.recovery_ms and not w.never_recovered:
        text += ", recovered after %.0f ms (worst thread %s)" % (w.worst_recovery_ms, w.worst_thread)
    elif w.never_recovered:
        text += ", thread%s %s never recovered within the %.1f s stall window" % (
            "s" if len(w.never_recovered) > 1 else "", ", ".join(w.never_recovered), o.stall_s)
        if w.recovery_ms:
            text += " (others after up to %.0f ms)" % w.worst_recovery_ms
        if o.stacks:
            text += "; stacks in report.stall.stacks"
    else:
        text += ", no thread had pings left to recover"
    if w.waiting_at_fault:
        text += "; waiting for a reply since before the fault: thread%s %s" % (
            "s" if len(w.waiting_at_fault) > 1 else "", ", ".join(w.waiting_at_fault))
    if w.hung_after:
        text += "; waiting for a reply to a request sent after the fault struck: thread%s %s" % (
            "s" if len(w.hung_after) > 1 else "", ", ".join(w.hung_after))
    if w.error:
        text += "; fault error: %s" % w.error
    return text


def explain(o: FaultOutcome) -> str:
    """One line: outside loss first (the part the fault does not excuse), then each window."""
    head = "%d lost outside" % o.lost_outside
    if o.lost_outside_by_thread:
        head += " (%s)" % _threads_text(o.lost_outside_by_thread)
    if o.lost_join:
        head += ", %d before their thread's first delivery" % o.lost_join
    if o.refused:
        head += ", %d refused with EAGAIN (not lost)" % o.refused
    if o.refused_unplaced:
        head += ", %d refused among the lost (their threads also lost pings)" % o.refused_unplaced
    windows = "; ".join(explain_window(o, w) for w in o.windows)
    # The first window leads, as in "partition rx 1.50–3.50 s: 0 lost outside, 37 lost inside ...".
    first, _, rest = windows.partition(": ")
    line = "%s: %s, %s" % (first, head, rest)
    if o.heartbeat is not None:
        line += "; heartbeats %s" % ("on" if o.heartbeat else "off")
    return line


# ---------------------------------------------------------------- the run's fault verdict

def option_names(sockopts: dict | None) -> frozenset:
    """A report's params.sockopts as the option names lab/expectations.py speaks of."""
    names = {"heartbeat": "heartbeat", "immediate": "immediate", "xpub_nodrop": "xpub-nodrop",
             "hwm": "hwm", "reconnect_ivl": "reconnect-ivl"}
    return frozenset(names[k] for k, v in (sockopts or {}).items() if k in names and v not in (None, False, []))


def libzmq_of(report: dict) -> str:
    """The run's libzmq, or 'SENDER->RECEIVER' when the sender's differs (a mixed pair)."""
    mine = (report.get("versions") or {}).get("libzmq") or ""
    theirs = next((((p.get("versions") or {}).get("libzmq")) for p in report.get("peers") or ()
                   if p.get("role") == "sender" and p.get("versions")), None) or mine
    return mine if theirs == mine else f"{theirs}->{mine}"


def judged(report: dict) -> Optional[dict]:
    """The run report's `fault` block: what the fault did (analyse), what libzmq promises for
    it (lab/expectations.py, with the source), and whether the two agree. None without faults.
    A fault that was never applied (the run ended first, the engine refused) is judged
    `not-applied`: the run says nothing about it."""
    from lab import expectations
    faults = report.get("faults") or ()
    if not faults:
        return None
    missing = [f for f in faults if f.get("start_ns") is None]
    if missing:
        return {"judged": "not-applied", "why": "; ".join("%s: %s" % (f.get("label") or f["kind"], f.get("error"))
                                                          for f in missing),
                "explain": None, "outcome": None, "expectation": None}
    sent = [x for t in threads_of(report) for x in t.sent_ns if x is not None]
    over = [f for f in faults if f.get("end_ns") is not None and sent and f["end_ns"] < min(sent)]
    if over and len(over) == len(faults):
        # nothing was on its way while it lasted: the run says nothing about it
        return {"judged": "not-applied", "why": "the fault was over before the first ping was sent",
                "explain": None, "outcome": None, "expectation": None}
    outcome = analyse(report)
    params = report.get("params") or {}
    first = faults[0]
    # the layout is a variant, not a socket option, but it changes which code path reconnects
    layout = {"pub-binds"} if params.get("variant") == "pub-binds" else set()
    expectation = expectations.expected_for(params.get("pattern", ""), first["kind"], first["target"],
                                            option_names(params.get("sockopts")) | layout, libzmq_of(report))
    if expectation is None:
        verdict, why = "no-promise", "no source speaks to this fault on this pattern/options/version"
    else:
        verdict, why = expectations.judge(expectation, outcome.to_dict(), report.get("outcome"))
    return {"judged": verdict, "why": why, "explain": outcome.explain(), "outcome": outcome.to_dict(),
            "expectation": expectation.to_dict() if expectation else None}
