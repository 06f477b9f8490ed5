"""The harness's pure evidence code: sequence tallies and run classification."""
from scenarios.evidence import Tally, classify, thread_rows, totals


def tally_of(seqs):
    t = Tally()
    for s in seqs:
        t.see(s)
    return t


def rows_for(tallies, completed, states=None):
    senders = [{"id": i, "attempted": n, "completed": n, "state": (states or {}).get(i, "done")}
               for i, n in enumerate(completed)]
    return thread_rows(senders, tallies)


def test_in_order_sequence_has_no_gap():
    t = tally_of(range(1, 11))
    assert (t.received, t.missing_for(10), t.duplicates, t.reorders, t.gap_for(10)) == (10, 0, 0, 0, None)


def test_first_messages_lost_gives_gap_at_one():
    t = tally_of(range(17, 101))
    assert t.first_gap == {"expected": 1, "got": 17}
    assert t.missing_for(100) == 16


def test_unseen_tail_is_missing_with_open_gap():
    t = tally_of(range(1, 91))
    assert t.missing_for(100) == 10
    assert t.gap_for(100) == {"expected": 91, "got": None}


def test_late_arrival_is_a_reorder_not_a_loss():
    t = tally_of([1, 3, 2, 4])
    assert (t.reorders, t.duplicates, t.missing_for(4)) == (1, 0, 0)


def test_repeat_is_a_duplicate():
    t = tally_of([1, 2, 2, 3])
    assert (t.duplicates, t.reorders, t.missing_for(3)) == (1, 0, 0)


def test_classify_ok():
    rows = rows_for([tally_of(range(1, 6))], [5])
    assert classify(rows, True, False, "done")[0] == "ok"


def test_classify_lost_names_the_first_gap():
    rows = rows_for([tally_of(range(1, 6)), tally_of(range(17, 21))], [5, 20])
    outcome, reason = classify(rows, True, False, "done")
    assert outcome == "lost"
    assert "thread 1 got #17 expecting #1" in reason


def test_lost_shutdown_alone_is_lost_not_deadlock():
    rows = rows_for([tally_of(range(1, 6))], [5])
    outcome, reason = classify(rows, False, True, "done")
    assert outcome == "lost" and "shutdown" in reason


def test_stalled_with_a_sender_inside_send_is_deadlock():
    rows = rows_for([tally_of([1])], [1], states={0: "send"})
    outcome, reason = classify(rows, False, True, "not-started")
    assert outcome == "deadlock" and "thread 0 in send" in reason


def test_stuck_shutdown_sender_is_deadlock():
    rows = rows_for([tally_of(range(1, 4))], [3])
    assert classify(rows, False, True, "send")[0] == "deadlock"


def test_misordered_and_precedence():
    rows = rows_for([tally_of([1, 1, 2])], [2])
    assert classify(rows, True, False, "done")[0] == "misordered"
    assert classify(rows, True, False, "done", error="boom")[0] == "error"
    assert classify(rows, True, False, "done", unsupported="no draft") == ("unsupported", "no draft")


def test_totals_add_up_rows():
    rows = rows_for([tally_of(range(1, 6)), tally_of([2, 3])], [5, 3])
    t = totals(rows, 8)
    assert (t["expected"], t["completed"], t["received"], t["missing"]) == (8, 8, 7, 1)
