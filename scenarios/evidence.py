"""Sequence checking and classification: pure code, no zmq, so it is unit-tested directly.

Outcomes (most severe wins): error > deadlock > lost > misordered > ok; unsupported stands
alone. `deadlock` needs a sender (or the shutdown sender) still inside a zmq call when
progress stopped; when every sender finished but pings or the shutdown never arrived, that is
`lost` (the reference's pub/sub "hang" is its shutdown lost by a brand-new PUB).
"""
from __future__ import annotations

# States in which a thread is inside a zmq call (or waiting on one) rather than finished.
# "wait-mutex" is not a zmq call, but a thread queued behind a stuck one is stuck with it.
# "no-account": a receiver's view of a thread in a sender process that never sent its account
# (frozen, crashed, its container gone): as stuck as a thread inside a send, seen from here.
# "killed" (not busy): a receiver's view of a thread of a sender process that a later incarnation
# replaced (scenarios/incarnations.py): it was killed with its process, not stuck.
BUSY_STATES = ("open", "connect", "poll", "send", "disconnect", "wait-subscription", "wait-reply", "close",
               "wait-mutex", "no-account")


class Tally:
    """What the receiver saw from one control thread: each seq must be previous + 1.

    `refused` is the sender's own set of seqs that a non-blocking send gave up on (EAGAIN,
    --nowait): those never entered the transport, so they are neither expected nor lost. The
    sender records a refusal before it sends the next seq, so by the time a later seq arrives
    here, every refused seq before it is already in the set.
    """

    __slots__ = ("received", "next_expected", "missing", "duplicates", "reorders", "first_gap", "refused")

    def __init__(self, refused=None):
        self.received = 0
        self.next_expected = 1
        self.missing = set()      # seqs skipped over so far; a late arrival is a reorder
        self.duplicates = 0
        self.reorders = 0
        self.first_gap = None
        self.refused = refused if refused is not None else set()

    def see(self, seq: int) -> None:
        self.received += 1
        expected = self.next_expected
        while expected in self.refused and expected < seq:
            expected += 1
        if seq == expected:
            self.next_expected = seq + 1
        elif seq > expected:
            if self.first_gap is None:
                self.first_gap = {"expected": expected, "got": seq}
            self.missing.update(n for n in range(expected, seq) if n not in self.refused)
            self.next_expected = seq + 1
        elif seq in self.missing:
            self.missing.discard(seq)
            self.reorders += 1
        else:
            self.duplicates += 1

    def _tail(self, completed: int):
        return [n for n in range(self.next_expected, completed + 1) if n not in self.refused]

    def missing_for(self, completed: int) -> int:
        """Seqs 1..completed that never arrived (gaps plus the unseen tail), refused ones aside."""
        if not self.refused:
            return len(self.missing) + max(0, completed - self.next_expected + 1)
        return len(self.missing) + len(self._tail(completed))

    def gap_for(self, completed: int):
        if self.first_gap is not None:
            return self.first_gap
        tail = self._tail(completed)
        if tail:
            return {"expected": tail[0], "got": None}
        return None


def thread_rows(senders, tallies):
    """Per-thread evidence rows: `senders` are dicts with id/attempted/completed/state."""
    rows = []
    for s, t in zip(senders, tallies):
        rows.append({
            "id": s["id"], "attempted": s["attempted"], "completed": s["completed"],
            "received": t.received, "missing": t.missing_for(s["completed"]),
            "duplicates": t.duplicates, "reorders": t.reorders,
            "first_gap": t.gap_for(s["completed"]), "state": s["state"],
            "would_block": s.get("would_block", 0),
        })
        if "incarnation" in s:
            rows[-1]["incarnation"] = s["incarnation"]
    return rows


def totals(rows, expected):
    out = {"expected": expected}
    for key in ("attempted", "completed", "received", "missing", "duplicates", "reorders"):
        out[key] = sum(r[key] for r in rows)
    return out


def describe_gap(thread, expected, got):
    """One wording for a broken sequence, used by the harness's reason and the lab's verdicts."""
    if got is None:
        return "thread %s got nothing expecting #%d" % (thread, expected)
    return "thread %s got #%d expecting #%d" % (thread, got, expected)


def label(row):
    """A row's thread as the reasons name it: its id, and 'id/k' for a sender incarnation k > 1
    (lab/fault_verdicts.py keys threads the same way)."""
    k = row.get("incarnation", 1)
    return str(row["id"]) if k == 1 else "%d/%d" % (row["id"], k)


def _row_gap(row):
    gap = row["first_gap"]
    if gap["got"] is not None:
        return describe_gap(label(row), gap["expected"], gap["got"])
    if row["received"] == 0 and not row.get("would_block"):
        return "thread %s: none of its %d pings arrived" % (label(row), row["completed"])
    return "thread %s: %d pings from #%d on never arrived" % (label(row), row["missing"], gap["expected"])


def classify(rows, shutdown_received, stalled, shutdown_state, error=None, unsupported=None):
    """Return (outcome, reason) for one run from its evidence.

    shutdown_state: where the thread sending the shutdown message was ('done', 'send', ...).
    stalled: True when the watchdog saw no progress for the stall window.
    """
    if unsupported:
        return "unsupported", unsupported
    if error:
        return "error", error
    if stalled:
        # (a killed incarnation's threads aside: a later one replaced them, scenarios/incarnations.py)
        live = [r for r in rows if r["state"] != "killed"]
        if live and all(r["state"] == "no-account" for r in live):
            return "deadlock", ("no progress and no account from the sender process within the stall "
                                "window + 1 s (frozen, crashed or gone; %d pings received)"
                                % sum(r["received"] for r in rows))
        stuck = ["thread %s in %s of #%d (%d completed)" % (label(r), r["state"], r["attempted"], r["completed"])
                 for r in rows if r["state"] in BUSY_STATES]
        if shutdown_state in BUSY_STATES:
            stuck.append("main program in %s (shared socket or shutdown message)" % shutdown_state)
        if stuck:
            more = " (+%d more)" % (len(stuck) - 3) if len(stuck) > 3 else ""
            return "deadlock", "no progress while stuck: " + "; ".join(stuck[:3]) + more
    lossy = [r for r in rows if r["missing"]]
    if lossy:
        missing = sum(r["missing"] for r in lossy)
        reason = "%d pings lost from %d threads; first: %s" % (missing, len(lossy), _row_gap(lossy[0]))
        if not shutdown_received:
            reason += "; shutdown message lost too"
        return "lost", reason
    if not shutdown_received:
        return "lost", "every ping arrived but the shutdown message was lost"
    odd = [r for r in rows if r["duplicates"] or r["reorders"]]
    if odd:
        return "misordered", "%d duplicates, %d reorders (first: thread %s)" % (
            sum(r["duplicates"] for r in odd), sum(r["reorders"] for r in odd), label(odd[0]))
    return "ok", "every ping arrived exactly once, in order, and the shutdown too"
