"""One run report from the two sides of a split run (pure: no zmq; the lab uses it too).

The receiver's report is the run report. Normally the sender's account reached it over the
report channel and nothing is left to do. When it did not (the sender froze, crashed or was
killed, or its container was), the receiver classified the run from its side alone
(`peers[i].account == "none"`): the sender's own output is then the only evidence of what
it was doing, and is attached here.
"""
from __future__ import annotations

import json

STDERR_TAIL = 20000


def sender_doc(stdout):
    """The sender's own document (schema zmqlab.sender/1), or None."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) and doc.get("schema") == "zmqlab.sender/1" else None
    return None


def attach(report, sender_stdout, sender_stderr):
    """`report` with the sender's own output attached where its account never arrived."""
    peers = report.get("peers")
    if not peers or all(p.get("account") != "none" for p in peers):
        return report
    report = dict(report)
    doc = sender_doc(sender_stdout)
    tail = (sender_stderr or "")[-STDERR_TAIL:]
    # the silent one (with sender incarnations, scenarios/incarnations.py, a killed one is not)
    at = next(i for i, p in enumerate(peers) if p.get("account") == "none")
    report["peers"] = list(peers)
    report["peers"][at] = dict(peers[at], own=doc["account"] if doc else None)
    acc = doc["account"] if doc else None
    stacks = {}
    if acc and acc.get("stacks"):
        stacks.update(("sender: " + k, v) for k, v in acc["stacks"].items())
    if tail.strip():
        stacks["sender stderr"] = tail          # faulthandler's dump of a frozen sender
    if stacks and report.get("stall"):
        report["stall"] = dict(report["stall"], stacks=dict(report["stall"].get("stacks") or {}, **stacks))
    if acc and acc.get("kind") == "error" and report.get("outcome") in ("deadlock", "lost"):
        report["outcome"] = "error"
        report["error"] = "sender side: %s" % acc.get("error")
        report["reason"] = report["error"] + " (the receiver never got its account: %s)" % report["reason"]
    elif not doc:
        report["reason"] += "; the sender process left no account%s" % (
            " (its stderr is kept as evidence)" if tail.strip() else "")
    return report
