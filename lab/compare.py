"""Comparing two sweeps cell by cell: what got worse, what got better, what is noise.

Runs are probabilistic (a PUB/SUB race loses messages in some runs, not all), so a raw
change of failure rate proves nothing with 5 runs a cell. A cell changed only when the
95% Wilson intervals of the two sides SEPARATE. Precisely, for each failure severity s
(misordered < lost < deadlock < error, lab.verdicts.SEVERITY) take the share of runs whose
outcome is at least that severe, with its Wilson interval:

    worse   some s has NEW's interval entirely above BASE's  (new.low > base.high)
    better  no s is worse, and some s has NEW's interval entirely below BASE's
    unchanged otherwise: equal, or a difference inside the noise (said so in the reason)

The lowest s is the plain failure rate; the higher ones catch a worse KIND of failure at an
unchanged rate (lost 5/5 -> deadlock 5/5 is worse at s=deadlock). Worse wins over better, so a
cell that trades many losses for a few deadlocks is never hidden as an improvement.
Cells that cannot be compared on rates:
    a side skipped (backend could not run it)             -> not-compared
    BASE ran, NEW is unsupported in every run               -> worse (a feature disappeared)
    BASE unsupported in every run, NEW ran                  -> better (a feature appeared)
    NEW inconsistent (lab.verdicts problems), BASE not      -> worse (a gate must not pass it)
    BASE inconsistent                                       -> not-compared
    different threads/msgs                                  -> not-compared (unfair match)
    in one sweep only                                       -> not-compared

Fault cells (`~<fault>` keys) carry each side's judgement against libzmq's promise for the
fault (lab/fault_verdicts.judged against lab/expectations.py; `Judgement` here). When both sides
have one, it overrides the rates twice:
    BASE judged expected, never unexpected; NEW unexpected in any run
                                                            -> worse, at any outcome
    rates say worse, but the promise is by design and every run of both sides was judged expected
                                                            -> unchanged ('by design: ...')
An unexpected run contradicts a documented promise: one counter-example is the finding, not a
rate to test for separation (and at an unchanged outcome no rate would move). A by-design loss
judged expected is what the library promises (BASE ok 5/5 -> NEW lost 5/5 within bounded-loss).
A side without a judgement (a baseline from before fault records) is judged on its rates.

Cells are matched by pattern/transport/label, the label naming the topology ('@containers'),
so a topology is only ever compared with itself. Comparing one pin with another (BASE A, NEW
B), NEW's pairs of the two pins (containers: A -> B, B -> A) are a *rolling upgrade*: each is
judged against BASE's A -> A of its column, the fleet it replaces, in a section of its own;
got worse there is got worse (exit 1). A run's pins are its cells' targets, pairs aside.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from lab import fault_verdicts
from lab.errors import LabError
from lab.matrix import Column, Matrix
from lab.render import cell_label
from lab.verdicts import FAILURES, INFRA, SEVERITY, Verdict, pct, wilson

STATUSES = ("worse", "better", "unchanged", "not-compared")
# Thresholds, least severe first: the first is "any failure".
THRESHOLDS = tuple(sorted(FAILURES, key=SEVERITY.__getitem__))


# A fault cell's runs per judgement (lab/fault_verdicts.judged), in this order.
JUDGEMENTS = fault_verdicts.JUDGEMENTS


@dataclass(frozen=True)
class Judgement:
    """A fault cell's runs judged against libzmq's promise for its fault: the promise (None
    when no source speaks to it) and how many runs were judged each way."""
    scenario_id: str | None
    expected: str | None             # the promised outcome: 'bounded-loss', 'no-loss', ...
    by_design: bool                  # the loss or hang IS the promise (not a promise of no loss)
    source_url: str | None
    counts: tuple[tuple[str, int], ...]     # per JUDGEMENTS
    why: str = field(default="", compare=False)   # the first run not judged expected: why (verdicts only)

    @classmethod
    def of(cls, v: Verdict) -> "Judgement | None":
        judged = v.fault_judgements
        if not judged:
            return None
        blocks = [r.report["fault"] for r in v.runs if r.outcome != INFRA and r.report.get("fault")]
        # Every run of a cell asks for the same promise (pattern x fault x options x libzmq); a
        # run whose fault was never applied has none, so take the first that has one.
        promise = next((b["expectation"] for b in blocks if b.get("expectation")), None) or {}
        odd = next((b for b in blocks if b["judged"] != "expected"), None)
        return cls(promise.get("scenario_id"), promise.get("expected"), bool(promise.get("by_design")),
                   promise.get("source_url"), tuple((j, judged.get(j, 0)) for j in JUDGEMENTS),
                   " ".join(str(odd.get("why") or "").split()) if odd else "")

    @classmethod
    def from_dict(cls, d: dict) -> "Judgement":
        """A baseline entry's `fault` (baseline.schema.json)."""
        promise = d.get("promise") or {}
        return cls(promise.get("scenario_id"), promise.get("expected"), bool(promise.get("by_design")),
                   promise.get("source_url"), tuple((j, d["judged"].get(j, 0)) for j in JUDGEMENTS))

    def to_dict(self) -> dict:
        promise = None if self.scenario_id is None else {
            "scenario_id": self.scenario_id, "expected": self.expected, "by_design": self.by_design,
            "source_url": self.source_url}
        return {"promise": promise, "judged": dict(self.counts)}

    def count(self, judged: str) -> int:
        return dict(self.counts).get(judged, 0)

    @property
    def runs(self) -> int:
        return sum(k for _, k in self.counts)

    @property
    def all_expected(self) -> bool:
        return self.runs > 0 and self.count("expected") == self.runs

    def promise_text(self) -> str:
        if self.scenario_id is None:
            return "no promise"
        return f"{self.scenario_id}: {self.expected}{', by design' if self.by_design else ''}"

    def tally(self) -> str:
        """'expected 5/5', 'expected 3/5, unexpected 2/5'."""
        return ", ".join(f"{j} {k}/{self.runs}" for j, k in self.counts if k)

    def mark(self) -> str:
        """The matrix cell's mark, as render.cell_text gives it: 'exp', 'UNEXP' or '?'."""
        if self.all_expected:
            return "exp"
        return "UNEXP" if self.count("unexpected") else "?"


@dataclass(frozen=True)
class Side:
    """What the comparison needs of one verdict (a matrix verdict or a baseline entry)."""
    key: str
    outcome: str                     # the verdict outcome (worst run, 'skipped', 'error' for problems)
    counts: tuple[tuple[str, int], ...]
    n: int
    threads: int
    msgs: int
    problem: str = ""                # lab inconsistency, if any
    note: str = ""                   # skip reason / unsupported reason
    fault: Judgement | None = None   # a fault cell's runs judged against libzmq's promise

    @classmethod
    def of(cls, v: Verdict) -> "Side":
        note = v.skip_reason or (v.runs[0].reason if v.n and v.counts["unsupported"] == v.n else "")
        return cls(v.cell.key, v.worst, tuple(v.counts.items()), v.n, v.cell.threads,
                   v.cell.msgs, v.problems[0] if v.problems else "", note, Judgement.of(v))

    def count(self, outcome: str) -> int:
        return dict(self.counts).get(outcome, 0)

    def at_least(self, severity: str) -> int:
        """Runs whose outcome is at least as bad as `severity`."""
        return sum(k for o, k in self.counts if o in FAILURES and SEVERITY[o] >= SEVERITY[severity])

    @property
    def all_unsupported(self) -> bool:
        return self.n > 0 and self.count("unsupported") == self.n

    def text(self) -> str:
        """The matrix cell's text (render.cell_label), from the counts this side keeps."""
        counts = dict(self.counts)
        text = cell_label(self.outcome, counts, self.n, counts.get("infra", 0), bool(self.problem))
        return f"{text} {self.fault.mark()}" if self.fault and self.fault.runs else text


@dataclass(frozen=True)
class Change:
    column: Column
    status: str
    reason: str
    base: Side | None
    new: Side | None
    pair: str = ""                   # a rolling upgrade's 'SENDER>RECEIVER' (judged against BASE's own)

    @property
    def label(self) -> str:
        return "/".join(self.column)


@dataclass(frozen=True)
class Comparison:
    base_id: str
    new_id: str
    matched_by: str                  # 'key' (same targets) or 'column' (one target each side)
    base_target: str
    new_target: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()      # what the reader must know first (partial runs, a run against itself)

    def having(self, status: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.status == status)

    @property
    def rolling(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.pair)

    @property
    def worse(self) -> tuple[Change, ...]:
        return self.having("worse")

    @property
    def better(self) -> tuple[Change, ...]:
        return self.having("better")

    @property
    def exit_code(self) -> int:
        return 1 if self.worse else 0

    def tally(self) -> dict[str, int]:
        return {s: len(self.having(s)) for s in STATUSES}


def _interval(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k}/{n} [{pct(low)}%–{pct(high)}%]"


def judge(base: Side | None, new: Side | None) -> tuple[str, str]:
    """(status, reason) for one matched pair; see the module docstring for the rules."""
    status, reason = _judge_rates(base, new)
    if status == "not-compared" or base.fault is None or new.fault is None or base.problem or new.problem:
        return status, reason
    return _judge_promise(base.fault, new.fault, status, reason)


def _judge_promise(base: Judgement, new: Judgement, status: str, reason: str) -> tuple[str, str]:
    """The fault judgements' say over the rates' (status, reason); module docstring."""
    promise = new.promise_text()
    if base.scenario_id != new.scenario_id:    # one pin against another: each has its own promise
        promise += f"; BASE's {base.promise_text()}"
    if base.count("expected") and not base.count("unexpected") and new.count("unexpected"):
        why = f": {new.why}" if new.why else ""
        return "worse", f"fault judged {base.tally()} -> {new.tally()} against {promise}{why}"
    if status == "worse" and new.by_design and base.all_expected and new.all_expected:
        return "unchanged", f"by design: {reason}, every run judged expected ({promise})"
    return status, reason


def _judge_rates(base: Side | None, new: Side | None) -> tuple[str, str]:
    """(status, reason) from outcomes and rates alone."""
    if base is None or new is None:
        return "not-compared", "only in " + ("NEW" if base is None else "BASE")
    for side, name in ((base, "BASE"), (new, "NEW")):
        if side.outcome == "skipped":
            return "not-compared", f"skipped in {name}: {side.note}"
        if side.n == 0:            # every run lost to the infrastructure: nothing was judged
            return "not-compared", f"nothing judged in {name}: every run was lost to the infrastructure"
    if (base.threads, base.msgs) != (new.threads, new.msgs):
        return "not-compared", (f"different sizes: BASE {base.threads} threads x {base.msgs} msgs, "
                                f"NEW {new.threads} x {new.msgs}")
    if new.problem and not base.problem:
        return "worse", f"the lab found NEW's runs inconsistent: {new.problem}"
    if base.problem:
        return "not-compared", f"the lab found BASE's runs inconsistent: {base.problem}"
    if base.all_unsupported and new.all_unsupported:
        return "unchanged", "unsupported in both"
    if new.all_unsupported:
        return "worse", f"no longer supported: {new.note}"
    if base.all_unsupported:
        return "better", f"now supported ({new.text()})"
    worse, better, moved = [], [], []
    for s in THRESHOLDS:
        kb, kn = base.at_least(s), new.at_least(s)
        lb, hb = wilson(kb, base.n)
        ln, hn = wilson(kn, new.n)
        what = "failed" if s == THRESHOLDS[0] else f"{s} or worse"
        text = f"{what} {_interval(kb, base.n)} -> {_interval(kn, new.n)}"
        if ln > hb:
            worse.append(text)
        elif hn < lb:
            better.append(text)
        elif kb / base.n != kn / new.n:
            moved.append(text)
    # The least severe separating threshold says it best (a higher one repeats it).
    if worse:
        return "worse", worse[0]
    if better:
        return "better", better[0]
    if moved:
        return "unchanged", "within noise: " + moved[0]
    return "unchanged", f"{base.text()} -> {new.text()}"


def _targets(m: Matrix) -> tuple[str, ...]:
    """The pins a run is about: its cells' targets, pairs of two pins aside (a run of nothing
    else is about all of theirs)."""
    own = [v.cell.target for v in m.verdicts if not v.cell.sender]
    return tuple(dict.fromkeys(own or [v.cell.target for v in m.verdicts]))


def match_mode(base: Matrix, new: Matrix) -> str:
    """'key' when both sweeps cover the same targets, 'column' when each covers exactly one."""
    tb, tn = _targets(base), _targets(new)
    if not tb or not tn:
        raise LabError(f"nothing to compare: run {(base if not tb else new).run_id} has no verdicts")
    if set(tb) == set(tn):
        return "key"
    if len(tb) == 1 and len(tn) == 1:
        return "column"
    raise LabError(f"cannot match cells: BASE has targets {', '.join(tb)}, NEW has {', '.join(tn)} "
                   "(compare the same targets, or one target against one)")


def compare_sides(pairs: Iterable[tuple[Column, Side | None, Side | None]]) -> tuple[Change, ...]:
    return tuple(Change(col, *judge(b, n), b, n) for col, b, n in pairs)


def _images(m: Matrix) -> dict[str, set[str]]:
    """Pin -> the image IDs its runs ran in (run reports' provenance; none for local runs and
    runs from before provenance)."""
    seen: dict[str, set[str]] = {}
    for v in m.verdicts:
        for run in v.runs:
            image = (run.report.get("provenance") or {}).get("image")
            if image:
                seen.setdefault(v.cell.target, set()).add(image)
    return seen


def different_images(base: Matrix, new: Matrix) -> list[str]:
    """One line per pin whose runs came from different images on the two sides (two builds
    of the same pin, say a rebuild between the runs, or two engines' own builds)."""
    short = lambda ids: ",".join(sorted(i.split(":")[-1][:12] for i in ids))  # noqa: E731
    b, n = _images(base), _images(new)
    return [f"NOTE: {pin} ran in different images: BASE {short(b[pin])}, NEW {short(n[pin])} "
            f"(two builds of the same pin; see the runs' provenance)"
            for pin in sorted(set(b) & set(n)) if b[pin] != n[pin]]


def compare(base: Matrix, new: Matrix) -> Comparison:
    """Cell-by-cell comparison of two matrices (pure: no I/O)."""
    mode = match_mode(base, new)
    tb, tn = _targets(base), _targets(new)

    def rolling(v: Verdict) -> bool:
        return mode == "column" and bool(v.cell.sender) and {v.cell.sender, v.cell.target} == {tb[0], tn[0]}

    def ident(v: Verdict):
        if mode == "key":
            return v.cell.key
        return ((v.cell.row,) if v.cell.sender else ()) + v.cell.column   # other pairs: only themselves
    b = {ident(v): v for v in base.verdicts}
    n = {ident(v): v for v in new.verdicts if not rolling(v)}
    # Column order: BASE's, then cells only NEW has, each in canonical cell order.
    order = {}
    for v in list(base.verdicts) + [v for v in new.verdicts if not rolling(v)]:
        order.setdefault(ident(v), (v.cell.target if mode == "key" else "", v.cell.order))
    rows = {t: i for i, t in enumerate(dict.fromkeys(tb + tn))}
    ids = sorted(order, key=lambda i: (rows.get(order[i][0], 0), order[i][1]))
    pairs = []
    for i in ids:
        v = b.get(i) or n.get(i)
        column = (v.cell.row,) + v.cell.column if mode == "key" else i
        pairs.append((column, Side.of(b[i]) if i in b else None, Side.of(n[i]) if i in n else None))
    upgrade = [v for v in new.verdicts if rolling(v)]
    notes = [f"WARNING: {side} run {m.run_id} is PARTIAL ({len(m.verdicts)} of {m.planned} cells); "
             f"cells it lacks are not compared" for side, m in (("BASE", base), ("NEW", new)) if m.partial]
    if base.run_id == new.run_id and base.created == new.created:
        notes.append(f"WARNING: BASE and NEW are the same run ({base.run_id}): nothing can change")
    notes += different_images(base, new)

    def mixed(v: Verdict) -> Change:
        own = Side.of(b[v.cell.column]) if v.cell.column in b else None      # BASE's A -> A
        return Change(v.cell.column, *judge(own, Side.of(v)), own, Side.of(v), v.cell.row)
    return Comparison(base.run_id, new.run_id, mode, ",".join(tb), ",".join(tn), compare_sides(pairs) + tuple(map(mixed, upgrade)),
                      tuple(notes))


# ---- rendering (pure) -----------------------------------------------------------------------

_MARK = {"worse": "WORSE", "better": "better", "unchanged": "same", "not-compared": "n/c"}


def headline(c: Comparison) -> str:
    t = c.tally()
    verdict = f"{t['worse']} got worse" if t["worse"] else "nothing got worse"
    return (f"{verdict}; {t['better']} better, {t['unchanged']} unchanged, "
            f"{t['not-compared']} not compared ({len(c.changes)} cells)")


def _title(c: Comparison) -> str:
    if c.matched_by == "column":
        return f"BASE {c.base_target} (run {c.base_id}) vs NEW {c.new_target} (run {c.new_id})"
    return f"BASE run {c.base_id} vs NEW run {c.new_id} ({c.base_target})"


def _telling(ch: Change) -> bool:
    """Whether the table prints a change's reason: not for a plain 'same', but for a difference
    the noise or the promise explains."""
    return ch.status != "unchanged" or ch.reason.startswith(("within noise", "by design"))


def table(c: Comparison) -> str:
    """Terminal table: changed cells first (worse, better), then the unchanged ones; a rolling
    upgrade's mixed pairs after them, in a table of their own."""
    order = {s: i for i, s in enumerate(STATUSES)}
    rows = sorted((ch for ch in c.changes if not ch.pair), key=lambda ch: order[ch.status])
    head = ("cell", "BASE", "NEW", "change")
    cells = [(ch.label, ch.base.text() if ch.base else "-", ch.new.text() if ch.new else "-",
              _MARK[ch.status]) for ch in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [_title(c), *c.notes, "", line(head), "-" * (sum(widths) + 6)]
    for ch, r in zip(rows, cells):
        out.append(line(r))
        if _telling(ch):
            out.append("    " + ch.reason)
    return "\n".join(out + _rolling_table(c, order) + ["", headline(c)]) + "\n"


def _rolling_note(c: Comparison) -> str:
    return (f"rolling upgrade (mixed pairs): each pair of {c.base_target} and {c.new_target} in two containers, "
            f"judged against {c.base_target} -> {c.base_target} (BASE)")


def _rolling_table(c: Comparison, order: dict) -> list[str]:
    if not c.rolling:
        return []
    rows = sorted(c.rolling, key=lambda ch: order[ch.status])
    head = ("cell", "sender>receiver", "BASE", "NEW", "change")
    cells = [(ch.label, ch.pair, ch.base.text() if ch.base else "-", ch.new.text(), _MARK[ch.status]) for ch in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    out = ["", _rolling_note(c), "", line(head), "-" * (sum(widths) + 8)]
    for ch, r in zip(rows, cells):
        out.append(line(r))
        if _telling(ch):
            out.append("    " + ch.reason)
    return out


def markdown(c: Comparison) -> str:
    out = ["# zmqlab comparison", "", _title(c) + "  ", *(f"**{n}**  " for n in c.notes), f"**{headline(c)}**", "",
           "A cell changed only when the 95% Wilson intervals of its failure rates separate.", ""]
    for status, title in (("worse", "Got worse"), ("better", "Got better"),
                          ("not-compared", "Not compared"), ("unchanged", "Unchanged")):
        group = tuple(ch for ch in c.having(status) if not ch.pair)
        if not group:
            continue
        out += [f"## {title} ({len(group)})", "", "| cell | BASE | NEW | why |", "|---|---|---|---|"]
        for ch in group:
            out.append(f"| {ch.label} | {ch.base.text() if ch.base else '-'} | "
                       f"{ch.new.text() if ch.new else '-'} | {ch.reason.replace('|', chr(92) + '|')} |")
        out.append("")
    if c.rolling:
        out += [f"## Rolling upgrade (mixed pairs) ({len(c.rolling)})", "", _rolling_note(c) + ".", "",
                "| cell | sender>receiver | BASE | NEW | change | why |", "|---|---|---|---|---|---|"]
        for ch in c.rolling:
            out.append(f"| {ch.label} | {ch.pair} | {ch.base.text() if ch.base else '-'} | {ch.new.text()} | "
                       f"{_MARK[ch.status]} | {ch.reason.replace('|', chr(92) + '|')} |")
        out.append("")
    return "\n".join(out)

