"""Sender processes one after another: a sender killed (kill -9) and started again with the same
argv plus --incarnation K (docs/topology.md). Pure: no zmq; the harness's receiver uses it to
write its report.

The receiver of a run with --incarnations N keeps threads × N records: incarnation k's thread t
is record t + (k - 1) × threads, which is also the thread field of that process's pings. Inside
the harness every record, tally, timeline row and monitor event is known by that one number;
only the report says (thread id, incarnation) instead, as lab/fault_verdicts.py reads it. A run
with N = 1 never comes here: its report stays exactly what it always was.

An incarnation is over when a later one says hello: its records that never gave an account are
`killed`. What such a thread sent past the last seq that arrived died with its process and is
unknowable, so its attempted = completed = the highest seq received; only gaps below count.
"""
from __future__ import annotations

KILLED = "killed"


def of(record: int, threads: int) -> tuple:
    """(thread id, incarnation) of a record number."""
    return record % threads, record // threads + 1


def highest_seq(next_expected: int) -> int:
    """The highest seq a tally saw (Tally.next_expected only ever moves past the highest)."""
    return next_expected - 1


def rows(rows: list, threads: int) -> list:
    """Thread rows (scenarios/evidence.thread_rows) by record number -> by thread id and
    incarnation."""
    return [dict(r, id=of(r["id"], threads)[0], incarnation=of(r["id"], threads)[1]) for r in rows]


def expected_total(senders: list, threads: int, msgs: int, current: int) -> int:
    """What the run was to deliver: what the incarnations before the latest one got out (their
    completed), plus the latest one's whole share."""
    return sum(s["completed"] for s in senders[:(current - 1) * threads]) + threads * msgs


def timeline(tl: dict, threads: int) -> dict:
    """The timeline's rows and sender-side events by thread id and incarnation (receiver-side
    events and the shutdown's socket, thread None, stay as they are)."""
    out = dict(tl)
    out["threads"] = [dict(t, id=of(t["id"], threads)[0], incarnation=of(t["id"], threads)[1])
                      for t in tl["threads"]]
    out["events"] = [dict(e, thread=of(e["thread"], threads)[0], incarnation=of(e["thread"], threads)[1])
                     if e.get("thread") is not None else e for e in tl["events"]]
    return out


def explain(explain_fn, tl: dict, rows: list, incarnations: int, **kw) -> list:
    """scenarios/timeline.explain once per incarnation, on that incarnation's rows, timeline rows
    and events only (a thread id means one thread within one process), each line prefixed
    'incarnation k: '."""
    lines = []
    for k in range(1, incarnations + 1):
        view = dict(tl, threads=[t for t in tl["threads"] if t.get("incarnation") == k],
                    events=[e for e in tl["events"] if e.get("incarnation", k) == k])
        mine = [r for r in rows if r.get("incarnation") == k]
        lines += ["incarnation %d: %s" % (k, line) for line in explain_fn(view, mine, **kw)]
    return lines


def killed_sent(sent: list, highest: int) -> tuple:
    """A killed thread's send times (seq k at index k - 1), from the pings that arrived (each
    carries its own): seqs past `highest` are unknowable (None). A gap below it was surely sent,
    and no later than the next ping that arrived: that ping's send time stands in for it, an
    upper bound, and its seq is listed apart. Returns (sent_ns, upper-bound seqs)."""
    out, bound, later = list(sent), [], None
    for i in range(len(out) - 1, -1, -1):
        if i >= highest:
            out[i] = None
        elif out[i] is None:
            out[i] = later
            bound.append(i + 1)
        else:
            later = out[i]
    return out, sorted(bound)


def peers(accounts: list, hellos: dict, current: int, incarnations: int) -> list:
    """The report's `peers`: one entry per incarnation 1..N. An account that arrived is its
    entry; an incarnation a later one replaced without an account is `killed`; one that never
    gave an account and was not replaced is `none` (as a silent sender always was). Host and
    pid come from its hello when it said one."""
    by_k = {}
    for acc in accounts:
        by_k[acc.get("incarnation", 1)] = acc
    out = []
    for k in range(1, incarnations + 1):
        if k in by_k:
            out.append(dict(by_k[k], incarnation=k))
            continue
        hello = hellos.get(k) or {}
        out.append({"role": "sender", "incarnation": k, "account": KILLED if k < current else "none",
                    "host": hello.get("host"), "pid": hello.get("pid"), "stacks": None})
    return out
