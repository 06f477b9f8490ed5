"""The interop grid: every ordered pair of pins, a sender of one and a receiver of another, each in
its own container over tcp (topology `containers`), judged per pattern label. Pure: a matrix's
verdicts in, a Grid out, and the grid as Markdown, a terminal table and JSON (HTML:
lab/report_interop.py).

Rows are senders, columns receivers; the diagonal A -> A is one pin in two containers, the
reference each mixed pair is read against. A mixed cell is *odd* when its outcome differs from
BOTH its same-version neighbours (sender -> sender and receiver -> receiver): neither version
alone explains it, so it is what mixing the two does, and the finding a write-up must explain.
"""
from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab import results
from lab.cells import VARIANTS, Cell
from lab.errors import LabError
from lab.matrix import Matrix
from lab.render import LEGEND, cell_text, column_chunks, header_line, run_detail
from lab.verdicts import INFRA, Verdict, describe_gap

INTEROP_SCHEMA = "zmqlab.interop/1"
INTEROP_FILE = "interop.json"


def grid_label(cell: Cell) -> str:
    """The heatmap a cell belongs to: its pattern, plus its options past the primary variant
    ('pubsub', 'pubsub+xpub', 'clientserver/per-thread+poll')."""
    primary = VARIANTS[cell.pattern][0]
    if cell.options.startswith(primary):
        return cell.pattern + cell.options[len(primary):]
    return cell.pattern + "/" + cell.options


@dataclass(frozen=True)
class Grid:
    run_id: str
    params: dict = field(hash=False)
    pins: tuple[str, ...]                      # row and column order: the pin file's
    labels: tuple[str, ...]                    # one heatmap each, in canonical cell order
    squares: dict = field(hash=False)          # (label, sender, receiver) -> Verdict
    versions: dict = field(hash=False, default_factory=dict)   # pin -> 'libzmq 4.3.4' (what it ran)

    def square(self, label: str, sender: str, receiver: str) -> Verdict | None:
        return self.squares.get((label, sender, receiver))


def build(matrix: Matrix) -> Grid:
    """The grid of a matrix's containers cells (other topologies are not pairs: left out)."""
    mine = [v for v in matrix.verdicts if v.cell.topology == "containers"]
    pins = [t.name for t in matrix.targets] + [n for v in mine for n in (v.cell.sender_target, v.cell.target)]
    pins = [p for p in dict.fromkeys(pins) if any(p in (v.cell.sender_target, v.cell.target) for v in mine)]
    labels, squares = {}, {}
    for v in mine:           # matrix verdicts come in canonical cell order within a row
        labels.setdefault(grid_label(v.cell), v.cell.order)
        squares[(grid_label(v.cell), v.cell.sender_target, v.cell.target)] = v
    versions = {}
    for pin in pins:
        row = matrix.row_versions(pin)
        versions[pin] = "libzmq %s" % row.libzmq if row.libzmq else ""
    return Grid(matrix.run_id, dict(matrix.params), tuple(pins), tuple(sorted(labels, key=labels.__getitem__)),
                squares, versions)


def _judged(v: Verdict | None) -> bool:
    return v is not None and v.worst not in ("skipped", INFRA)


@dataclass(frozen=True)
class Odd:
    label: str
    sender: str
    receiver: str
    verdict: Verdict
    sender_self: Verdict           # sender -> sender
    receiver_self: Verdict         # receiver -> receiver

    def line(self) -> str:
        return (f"{self.label}: {self.sender} -> {self.receiver} is {cell_text(self.verdict)}, but "
                f"{self.sender} -> itself {cell_text(self.sender_self)} and {self.receiver} -> itself "
                f"{cell_text(self.receiver_self)}")


def odd_cells(grid: Grid) -> tuple[Odd, ...]:
    """Mixed cells whose worst outcome differs from both same-version neighbours' (all three
    judged: a skipped or infra-only neighbour tells nothing). Rates alone do not make a cell
    odd: with a few runs a cell, 'lost 1/3' next to 'lost 3/3' is the same finding."""
    found = []
    for label in grid.labels:
        for s in grid.pins:
            for r in grid.pins:
                mixed, own_s, own_r = (grid.square(label, s, r), grid.square(label, s, s), grid.square(label, r, r))
                if s != r and _judged(mixed) and _judged(own_s) and _judged(own_r) \
                        and mixed.worst != own_s.worst and mixed.worst != own_r.worst:
                    found.append(Odd(label, s, r, mixed, own_s, own_r))
    return tuple(found)


# ---- evidence of one square --------------------------------------------------------------------

def evidence(v: Verdict) -> dict:
    """What a heatmap cell opens: the summary, per-run outcomes, the first gap, the reason of
    the worst run, what the harness explained and whether the sender's account arrived."""
    if v.skip_reason:
        return {"key": v.cell.key, "summary": v.summary_line(), "runs": [], "reason": v.skip_reason,
                "first_gap": None, "explain": [], "accounts": [], "details": []}
    worst = v.first_run(v.worst) or v.runs[0]
    gap_run = v.first_run("lost", "misordered")
    gap = gap_run.first_gap if gap_run else None
    return {"key": v.cell.key, "summary": v.summary_line(), "runs": [r.outcome for r in v.runs],
            "reason": " ".join(worst.reason.split()), "first_gap": describe_gap(gap) if gap else None,
            "explain": list(worst.explain or []),
            "accounts": [p.get("account", "?") for r in v.runs for p in (r.peers or [])[:1]],
            "details": [run_detail(r) for r in v.runs]}


# ---- JSON ------------------------------------------------------------------------------------

def to_dict(grid: Grid) -> dict:
    def square(label: str, s: str, r: str) -> dict | None:
        v = grid.square(label, s, r)
        if v is None:
            return None
        return {"sender": s, "receiver": r, "text": cell_text(v), "outcome": v.worst, "n": v.n,
                "failures": v.failures, "rate": v.rate, "rate_low": v.rate_low, "rate_high": v.rate_high,
                "evidence": evidence(v)}
    return {"schema": INTEROP_SCHEMA, "run_id": grid.run_id, "params": grid.params, "pins": list(grid.pins),
            "versions": grid.versions, "rows": "sender", "columns": "receiver",
            "grids": {label: [[square(label, s, r) for r in grid.pins] for s in grid.pins] for label in grid.labels},
            "odd": [{"label": o.label, "sender": o.sender, "receiver": o.receiver, "line": o.line()}
                    for o in odd_cells(grid)]}


def to_json(grid: Grid) -> str:
    return json.dumps(to_dict(grid), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def save(run_dir: str | Path, grid: Grid) -> Path:
    """<run_dir>/interop.json, checked against interop.schema.json before it is written (atomic:
    a document that fails leaves the old file); the same text as to_json."""
    return results.write_json_atomic(Path(run_dir) / INTEROP_FILE, to_dict(grid), "interop")


def load(path_or_dir: str | Path) -> dict:
    """An interop.json (or the one in a results directory), checked: missing, corrupt, foreign,
    off-schema or inconsistent files are a one-line LabError naming the file."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / INTEROP_FILE
    data = results.read_json(path, "interop")
    problem = _inconsistency(data)
    if problem:
        raise LabError(f"{path} is inconsistent: {problem}")
    return data


def _inconsistency(data: dict) -> str:
    """What the schema cannot say: every grid is pins x pins, each square where its sender and
    receiver put it, each odd cell naming a grid and pins of the document."""
    pins = data["pins"]
    for label, rows in data["grids"].items():
        if len(rows) != len(pins):
            return f"grids.{label} has {len(rows)} rows, not {len(pins)} (one per pin)"
        for i, row in enumerate(rows):
            if len(row) != len(pins):
                return f"grids.{label}[{i}] has {len(row)} squares, not {len(pins)} (one per pin)"
            for j, sq in enumerate(row):
                if sq is not None and (sq["sender"], sq["receiver"]) != (pins[i], pins[j]):
                    return (f"grids.{label}[{i}][{j}] is {sq['sender']} -> {sq['receiver']}, "
                            f"where {pins[i]} -> {pins[j]} belongs")
    for k, o in enumerate(data["odd"]):
        if o["label"] not in data["grids"] or o["sender"] not in pins or o["receiver"] not in pins:
            return f"odd[{k}] names {o['label']}: {o['sender']} -> {o['receiver']}, which no grid holds"
    return ""


# ---- Markdown ----------------------------------------------------------------------------------

def anchor(grid: Grid, label: str, sender: str, receiver: str) -> str:
    """A heatmap cell's evidence id: indexes, since pin names hold dots GitHub's slugs drop."""
    return "ev-%d-%d-%d" % (grid.labels.index(label), grid.pins.index(sender), grid.pins.index(receiver))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _head(grid: Grid) -> list[str]:
    params = grid.params
    size = " · ".join(f"{k}={params[k]}" for k in ("repeat", "threads", "msgs", "stall", "sleep", "jobs")
                      if params.get(k) is not None)
    return [f"# zmqlab interop {grid.run_id}", "",
            f"Every ordered pair of {len(grid.pins)} pins, sender (row) -> receiver (column), each side in its own "
            f"container over tcp; the diagonal is one pin in two containers. {size}", ""]


def markdown(grid: Grid) -> str:
    out = _head(grid)
    odd = odd_cells(grid)
    for label in grid.labels:
        out += [f"## {label}", "", "| sender \\ receiver | " + " | ".join(_md(p) for p in grid.pins) + " |",
                "|---|" + "---|" * len(grid.pins)]
        for s in grid.pins:
            cells = []
            for r in grid.pins:
                v = grid.square(label, s, r)
                text = _md(cell_text(v))
                if v is not None:
                    text = f"[{'**' + text + '**' if v.failed else text}](#{anchor(grid, label, s, r)})"
                cells.append(text)
            out.append(f"| {_md(s)} {grid.versions.get(s, '')} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Odd cells", "",
            "Mixed pairs whose outcome differs from both same-version neighbours (sender -> sender, "
            "receiver -> receiver): what mixing the versions does.", ""]
    out += [f"- {_md(o.line())}" for o in odd] or ["None."]
    out += ["", "## Evidence", ""]
    for label in grid.labels:
        for s in grid.pins:
            for r in grid.pins:
                v = grid.square(label, s, r)
                if v is None:
                    continue
                ev = evidence(v)
                out.append(f'- <a id="{anchor(grid, label, s, r)}"></a>**{_md(label)}: {_md(s)} -> {_md(r)}** '
                           f"{_md(ev['summary'])}")
                if ev["runs"]:
                    out.append(f"  - runs: {', '.join(ev['runs'])}")
                if ev["first_gap"]:
                    out.append(f"  - first gap: {_md(ev['first_gap'])}")
                if v.failed or v.infra:
                    out += [f"  - run {i}: {_md(d)}" for i, d in enumerate(ev["details"], 1)]
                    out += [f"  - explained: {_md(e)}" for e in ev["explain"]]
    out += ["", "Legend:", ""] + [f"- `{sym}` {meaning}" for sym, meaning in LEGEND]
    return "\n".join(out) + "\n"


# ---- terminal --------------------------------------------------------------------------------

def table(grid: Grid, matrix: Matrix | None = None, width: int | None = None) -> str:
    """One rich table per label; columns are numbered (the names would not fit 11 across), the
    rows say which number is which pin. As in the matrix table, a label whose columns do not fit
    `width` (default: the terminal's) is split into several tables, never cut off. Odd cells are
    listed under the grids."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, highlight=False)
    if matrix is not None:
        console.print(header_line(matrix), soft_wrap=True)
    console.print("rows: sender, columns: receiver (numbered as the rows); the diagonal is one pin in two "
                  "containers", soft_wrap=True)
    names = [f"{i} {s}" for i, s in enumerate(grid.pins, 1)]
    label_w = max(len(n) for n in names + ["sender \\ receiver"]) + 3
    for label in grid.labels:
        texts = {(s, r): cell_text(grid.square(label, s, r)) for s in grid.pins for r in grid.pins}
        widths = [max([len(str(i))] + [len(texts[(s, r)]) for s in grid.pins]) for i, r in enumerate(grid.pins, 1)]
        chunks = column_chunks(widths, label_w, width)
        for n, chunk in enumerate(chunks, 1):
            title = label + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else "")
            heat = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            heat.add_column("sender \\ receiver", no_wrap=True)
            for i in chunk:
                heat.add_column(str(i + 1), no_wrap=True, min_width=widths[i])
            for name, s in zip(names, grid.pins):
                cells = []
                for i in chunk:
                    v = grid.square(label, s, grid.pins[i])
                    cells.append(Text(texts[(s, grid.pins[i])], style="bold" if v is not None and v.failed else ""))
                heat.add_row(name, *cells)
            console.print(heat)
    odd = odd_cells(grid)
    console.print("odd cells (differ from both same-version neighbours): " + ("none" if not odd else str(len(odd))),
                  soft_wrap=True)
    for o in odd:
        console.print("  " + o.line(), soft_wrap=True)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"
