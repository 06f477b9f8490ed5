"""Pure renderers: a matrix as a terminal table or as GitHub markdown; a verdict as one line.

A full sweep has ~40 columns, far wider than a terminal, so both get one table per pattern;
rich fits each terminal table to the terminal's width.
"""
from __future__ import annotations

import io
import shutil
from itertools import groupby
from typing import Mapping

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.matrix import Matrix
from lab.verdicts import FAILURES, INFRA, SEVERITY, RunSummary, Verdict, describe_gap, describe_stall

LEGEND = (
    ("ok k/n", "all k of n runs clean"),
    ("LOST f/n", "f of n runs failed (also MISORDERED, DEADLOCK, ERROR: the worst kind is shown)"),
    ("...*", "runs failed in more than one way (see the details)"),
    ("...~", "some runs were lost to the infrastructure (container killed, paused or removed from "
             "outside; an engine error): run again, not counted"),
    ("infra", "every run was lost to the infrastructure: nothing judged"),
    ("ERROR!", "the lab found the runs inconsistent (versions or parameters differ)"),
    ("unsup", "not available in this build (e.g. CLIENT/SERVER without the draft API)"),
    ("skip", "target not runnable on this backend"),
    ("-", "not run in this sweep"),
)
_PARAM_ORDER = ("runs", "threads", "msgs", "stall", "sleep", "timeout")


def verdict_line(verdict: Verdict) -> str:
    return verdict.summary_line()


def cell_text(verdict: Verdict | None) -> str:
    """The few characters a verdict gets in a table cell."""
    if verdict is None:
        return "-"
    text = cell_label(verdict.worst, verdict.counts, verdict.n, verdict.infra, bool(verdict.problems))
    judged = verdict.fault_judgements
    if judged:      # a fault cell: its outcome against libzmq's promise (lab/expectations.py)
        odd = sum(v for k, v in judged.items() if k != "expected")
        text += " exp" if not odd else " UNEXP" if judged.get("unexpected") else " ?"
    return text


def cell_label(worst: str, counts: Mapping[str, int], n: int, infra: int = 0, problem: bool = False) -> str:
    """The cell text from a verdict's counts alone (compare.Side and baseline entries have no
    runs): 'ok 5/5', 'LOST 3/5', 'DEADLOCK 2/3*' (failed more than one way), a '~' when runs
    were lost to the infrastructure, 'unsup', 'infra', 'skip', 'ERROR!'."""
    if worst == "skipped":
        return "skip"
    if problem:
        return "ERROR!"
    if worst == INFRA:
        return "infra"
    mark = "~" if infra else ""
    if worst == "ok":
        return f"ok {counts.get('ok', 0)}/{n}{mark}"
    if worst == "unsupported":
        unsup = counts.get("unsupported", 0)
        return ("unsup" if unsup == n else f"unsup {unsup}/{n}") + mark
    failed = [o for o in FAILURES if counts.get(o)]
    mixed = "*" if len(failed) > 1 else ""
    return f"{worst.upper()} {sum(counts[o] for o in failed)}/{n}{mixed}{mark}"


def row_label(matrix: Matrix, target: str) -> str:
    v = matrix.row_versions(target)
    if not v.libzmq:
        return target
    return f"{target} (libzmq {v.libzmq}{', draft' if v.draft else ''})"


def header_line(matrix: Matrix) -> str:
    params = " ".join(f"{k}={matrix.params[k]}" for k in _PARAM_ORDER if matrix.params.get(k) is not None)
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

def table(matrix: Matrix, width: int | None = None) -> str:
    """The matrix for a terminal, through rich: per pattern, tables of rows = targets and
    columns = transport and variant, as many columns per table as fit `width` (default: the
    terminal's), so no column is ever cut off; failures in bold."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(header_line(matrix), soft_wrap=True)
    if not matrix.columns:
        console.print("(no cells)")
    label_w = max([len("target")] + [len(r) for r in matrix.rows]) + 3      # + padding and edge
    for pattern, group in groupby(matrix.columns, key=lambda c: c[0]):
        group = list(group)
        rows = {r: [matrix.lookup(r, c) for c in group] for r in matrix.rows}
        # a cell's text never breaks; a long variant label breaks before each "+option"
        widths = [max([len(cell_text(v[i])) for v in rows.values()] + [len(part) for part in
                  (c[1], *c[2].replace("+", " +").split())]) for i, c in enumerate(group)]
        chunks = column_chunks(widths, label_w, width)
        for n, chunk in enumerate(chunks, 1):
            title = pattern + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else "")
            grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            grid.add_column("target", no_wrap=True)
            for i in chunk:
                grid.add_column(group[i][1] + "\n" + group[i][2].replace("+", "\n+"), min_width=widths[i])
            for r, verdicts in rows.items():
                v = matrix.row_versions(r)
                label = r + (f"\nlibzmq {v.libzmq}{' draft' if v.draft else ''}" if v.libzmq else "")
                grid.add_row(label, *(Text(cell_text(verdicts[i]), style="bold" if verdicts[i] is not None
                                           and verdicts[i].failed else "") for i in chunk))
            console.print(grid)
    console.print(tally_line(matrix), soft_wrap=True)
    console.print("legend:\n" + "\n".join(f"  {sym:<9} {meaning}" for sym, meaning in LEGEND), soft_wrap=True)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


# ---- markdown --------------------------------------------------------------------------------

def column_chunks(widths: list[int], label_w: int, width: int) -> list[list[int]]:
    """Column indexes split into tables that each fit `width` beside the row labels (a
    column's text never breaks; a table holds at least one column)."""
    chunks, used = [[]], label_w
    for i, w in enumerate(widths):
        if chunks[-1] and used + w + 3 > width:        # + padding and edge
            chunks.append([])
            used = label_w
        chunks[-1].append(i)
        used += w + 3
    return chunks


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
    lost_to_infra = [v for v in matrix.verdicts if v.infra]
    if lost_to_infra:
        out += ["", "## Infrastructure (not counted)", ""]
        for verdict in lost_to_infra:
            out.append(f"- {_md(verdict.summary_line())}")
            out += [f"  - run {i}: {_md(run_detail(run))}" for i, run in enumerate(verdict.runs, 1)
                    if run.outcome == INFRA]
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
    if run.outcome == INFRA:
        return f"{text}: {' '.join(run.reason.split())}"
    gaps = [t for t in run.threads if t["first_gap"] is not None]
    if run.first_gap:
        text += f": first gap {describe_gap(run.first_gap)}"
    totals = report["totals"]
    return (f"{text}; {len(gaps)}/{len(run.threads)} threads affected, "
            f"{totals['missing']} missing, {totals['reorders']} reordered, "
            f"{totals['duplicates']} duplicated")


def _md(text: str) -> str:
    return text.replace("|", "\\|")
