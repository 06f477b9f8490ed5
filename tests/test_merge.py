"""scenarios/merge.py: the sender's own output attached to the receiver's report (pure)."""
import json

from scenarios.merge import attach, sender_doc


def receiver_report(account="none", outcome="deadlock"):
    return {"outcome": outcome, "reason": "no progress and no account from the sender process",
            "error": None, "stall": {"since_progress_s": 2.1, "stacks": {}},
            "peers": [{"role": "sender", "account": account}]}


def sender_out(kind="stalled", stacks=None, error=None):
    doc = {"schema": "zmqlab.sender/1", "versions": {}, "delivered": False,
           "account": {"kind": kind, "stacks": stacks, "error": error}}
    return "noise\n" + json.dumps(doc) + "\n"


def test_a_report_that_has_the_account_is_left_alone():
    report = receiver_report(account="final", outcome="ok")
    assert attach(report, sender_out(), "boom") is report


def test_the_senders_stacks_join_the_evidence_when_its_account_never_arrived():
    merged = attach(receiver_report(), sender_out(stacks={"control-1 (7)": "File x, in send"}), "")
    assert merged["stall"]["stacks"] == {"sender: control-1 (7)": "File x, in send"}
    assert merged["peers"][0]["own"]["kind"] == "stalled"
    assert merged["outcome"] == "deadlock"


def test_a_frozen_senders_stderr_is_kept_and_said():
    merged = attach(receiver_report(), "", "Thread 0x1 (most recent call first):\n  File harness.py")
    assert merged["stall"]["stacks"]["sender stderr"].startswith("Thread 0x1")
    assert merged["reason"].endswith("the sender process left no account (its stderr is kept as evidence)")


def test_a_sender_that_failed_turns_the_silent_deadlock_into_its_error():
    merged = attach(receiver_report(), sender_out(kind="error", error="control thread 0: OSError: x"), "")
    assert merged["outcome"] == "error"
    assert merged["error"] == "sender side: control thread 0: OSError: x"


def test_only_the_senders_document_counts():
    assert sender_doc('{"schema": "zmqlab.run/1"}\n') is None
    assert sender_doc("not json {\n") is None
    assert sender_doc(sender_out())["account"]["kind"] == "stalled"
