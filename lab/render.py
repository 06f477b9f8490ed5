"""Pure renderers: a matrix as a terminal table or as GitHub markdown; a verdict as one line.

A full sweep has ~40 columns, far wider than a terminal, so the terminal table is cut into
blocks that fit `width`, breaking between patterns where possible, each block repeating
the row labels. Markdown gets one table per pattern for the same reason.
"""
from __future__ import annotations

from itertools import groupby

from lab.matrix import Column, Matrix
from lab.verdicts import FAILURES, SEVERITY, RunSummary, Verdict, describe_gap, describe_stall

LEGEND = (
    ("ok k/n", "all k of n runs clean"),
    ("LOST f/n", "f of n runs failed (also MISORDERED, DEADLOCK, ERROR: the worst kind is shown)"),
    ("...*", "runs failed in more than one way (see the details)"),
    ("ERROR!", "the lab found the runs inconsistent (versions or parameters differ)"),
    ("unsup", "not available in this build (e.g. CLIENT/SERVER without the draft API)"),
    ("skip", "target not runnable on this backend"),
    ("-", "not run in this sweep"),
)
_PARAM_ORDER = ("runs", "threads", "msgs", "stall", "sleep", "timeout")
_GAP = "  "          # between columns
_GROUP_GAP = " | "   # between patterns


def verdict_line(verdict: Verdict) -> str:
    return verdict.summary_line()


def cell_text(verdict: Verdict | None) -> str:
    """The few characters a verdict gets in a table cell."""
    if verdict is None:
        return "-"
    worst, counts, n = verdict.worst, verdict.counts, verdict.n
    if worst == "skipped":
        return "skip"
    if verdict.problems:
        return "ERROR!"
    if worst == "ok":
        return f"ok {counts['ok']}/{n}"
    if worst == "unsupported":
        return "unsup" if counts["unsupported"] == n else f"unsup {counts['unsupported']}/{n}"
    mixed = "*" if sum(1 for o in FAILURES if counts[o]) > 1 else ""
    return f"{worst.upper()} {verdict.failures}/{n}{mixed}"


def row_label(matrix: Matrix, target: str) -> str:
    v = matrix.row_versions(target)
    if not v.libzmq:
        return target
    return f"{target} (libzmq {v.libzmq}{', draft' if v.draft else ''})"


def header_line(matrix: Matrix) -> str:
    params = " ".join(f"{k}={matrix.params[k]}" for k in _PARAM_ORDER if k in matrix.params)
    parts = [f"zmqlab run {matrix.run_id}", f"backend {matrix.backend}"]
    parts += [p for p in (matrix.created, params) if p]
    return " · ".join(parts)


def tally_line(matrix: Matrix) -> str:
    tally = matrix.tally()
    parts = [f"{tally[o]} {o}" for o in sorted(tally, key=SEVERITY.__getitem__) if tally[o]]
    line = f"cells: {len(matrix.verdicts)} ({', '.join(parts) or 'none'})"
    if matrix.partial:
        line = (f"PARTIAL RUN: {len(matrix.verdicts)} of {matrix.planned} cells have a verdict "
                f"(finish it with `matrix --resume`) · " + line)
    return line


# ---- terminal table ------------------------------------------------------------------------

def table(matrix: Matrix, width: int = 120) -> str:
    rows = matrix.rows
    labels = [row_label(matrix, r) for r in rows]
    label_w = max([len("target")] + [len(x) for x in labels])
    texts = {(r, c): cell_text(matrix.lookup(r, c)) for r in rows for c in matrix.columns}
    col_w = {c: max([len(c[2]), len(c[1])] + [len(texts[r, c]) for r in rows]) for c in matrix.columns}

    out = [header_line(matrix), ""]
    if not matrix.columns:
        out.append("(no cells)")
    for block in _blocks(matrix.columns, col_w, width - label_w - len(_GAP)):
        out += _render_block(block, rows, labels, label_w, col_w, texts)
        out.append("")
    out += [tally_line(matrix), "legend:"] + [f"  {sym:<9} {meaning}" for sym, meaning in LEGEND]
    return "\n".join(out) + "\n"


def _blocks(columns: tuple[Column, ...], col_w: dict, room: int) -> list[list[list[Column]]]:
    """Columns -> blocks -> pattern groups, each block at most `room` wide when possible."""
    blocks: list[list[list[Column]]] = []
    used = room + 1                                # forces a first block
    for _, group in groupby(columns, key=lambda c: c[0]):
        group = list(group)
        need = _width(group, col_w)
        if used + len(_GROUP_GAP) + need <= room:
            blocks[-1].append(group)
            used += len(_GROUP_GAP) + need
            continue
        # A pattern wider than the room is split on its own; otherwise start a new block.
        while group:
            piece = [group[0]]
            for c in group[1:]:
                if _width(piece + [c], col_w) > room:
                    break
                piece.append(c)
            blocks.append([piece])
            used = _width(piece, col_w)
            group = group[len(piece):]
    return blocks


def _width(group: list[Column], col_w: dict) -> int:
    return sum(col_w[c] for c in group) + len(_GAP) * (len(group) - 1)


def _render_block(block, rows, labels, label_w, col_w, texts) -> list[str]:
    def line(first: str, per_column) -> str:
        groups = [_GAP.join(per_column(c).ljust(col_w[c]) for c in g) for g in block]
        return (first.ljust(label_w) + _GAP + _GROUP_GAP.join(groups)).rstrip()

    def spanning(index: int):
        # Write a pattern/transport name above the first column of its run only.
        def text(c: Column) -> str:
            cols = [x for g in block for x in g]
            i = cols.index(c)
            return c[index] if i == 0 or cols[i - 1][: index + 1] != c[: index + 1] else ""
        return text

    out = [line("", spanning(0)), line("", spanning(1)), line("target", lambda c: c[2])]
    out.append("-" * len(max(out, key=len)))
    for r, label in zip(rows, labels):
        out.append(line(label, lambda c: texts[r, c]))
    return out


# ---- markdown --------------------------------------------------------------------------------

def markdown(matrix: Matrix) -> str:
    out = [f"# zmqlab run {matrix.run_id}", "",
           header_line(matrix).split(" · ", 1)[-1] + "  ", tally_line(matrix), ""]
    for pattern, group in groupby(matrix.columns, key=lambda c: c[0]):
        group = list(group)
        out += [f"## {pattern}", ""]
        out.append("| target | libzmq | " + " | ".join(f"{c[1]} {c[2]}" for c in group) + " |")
        out.append("|---|---|" + "---|" * len(group))
        for r in matrix.rows:
            v = matrix.row_versions(r)
            libzmq = (v.libzmq or "?") + (" (draft)" if v.draft else "")
            cells = []
            for c in group:
                verdict = matrix.lookup(r, c)
                text = cell_text(verdict).replace("*", "\\*")
                cells.append(f"**{text}**" if verdict is not None and verdict.failed else text)
            out.append(f"| {_md(r)} | {libzmq} | " + " | ".join(cells) + " |")
        out.append("")
    failed = matrix.failed
    out += ["## Failures", ""]
    if not failed:
        out.append("None.")
    for verdict in failed:
        out.append(f"- {_md(verdict.summary_line())}")
        for i, run in enumerate(verdict.runs, 1):
            if run.outcome in FAILURES:
                out.append(f"  - run {i}: {_md(run_detail(run))}")
    absent = [v for v in matrix.verdicts if v.worst in ("unsupported", "skipped")]
    if absent:
        out += ["", "## Not run", ""]
        out += [f"- {_md(v.summary_line())}" for v in absent]
    out += ["", "Legend:", ""] + [f"- `{sym}` {meaning}" for sym, meaning in LEGEND]
    return "\n".join(out) + "\n"


def run_detail(run: RunSummary) -> str:
    """One run's evidence: the outcome, where it broke, and how much went missing."""
    report = run.report
    text = f"{run.outcome} ({run.classified_by}, {run.duration_s:.1f}s)"
    if run.outcome == "deadlock":
        return f"{text}: {describe_stall(run)}"
    if run.outcome == "error":
        return f"{text}: {' '.join(run.error.split())}"
    gaps = [t for t in run.threads if t["first_gap"] is not None]
    if run.first_gap:
        text += f": first gap {describe_gap(run.first_gap)}"
    totals = report["totals"]
    return (f"{text}; {len(gaps)}/{len(run.threads)} threads affected, "
            f"{totals['missing']} missing, {totals['reorders']} reordered, "
            f"{totals['duplicates']} duplicated")


def _md(text: str) -> str:
    return text.replace("|", "\\|")
