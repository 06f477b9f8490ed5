"""The interop grid as one self-contained HTML page: per pattern label, a heatmap of senders
(rows) x receivers (columns), each cell's evidence one click away; the odd cells listed first.

Same conventions as the matrix page (lab/report_html.py, whose colours and styles it borrows):
no external assets, evidence panels shown with CSS :target so a click works without scripts.
Pure: render(grid) -> str.
"""
from __future__ import annotations

from html import escape

from lab.interop import Grid, anchor, evidence, odd_cells
from lab.render import LEGEND
from lab.report_html import CSS, SCRIPT, heat_cell

EXTRA_CSS = """
.heat td.diag{outline:2px solid #8888;outline-offset:-3px}
.heat td.odd{box-shadow:inset 0 0 0 3px #222}
.heat th.col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;max-height:14em}
.odd-list li{margin:.2em 0}
"""


def render(grid: Grid) -> str:
    title = f"zmqlab interop {grid.run_id}"
    odd = odd_cells(grid)
    odd_at = {(o.label, o.sender, o.receiver) for o in odd}
    p = grid.params
    meta = ", ".join(f"{k} {p[k]}" for k in ("repeat", "threads", "msgs", "stall", "sleep", "jobs") if k in p)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<title>{escape(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f'<p class="meta">Every ordered pair of {len(grid.pins)} pins: the sender (row) in one container, '
             f"the receiver (column) in another, over tcp; the diagonal (outlined) is one pin in two containers. "
             f"{escape(meta)}</p>",
             '<p id="status">click a cell for its evidence</p>',
             _odd(grid, odd),
             '<div class="heatmap">', *(_table(grid, label, odd_at) for label in grid.labels), "</div>",
             _legend(),
             *(_panel(grid, label, s, r) for label in grid.labels for s in grid.pins for r in grid.pins
               if grid.square(label, s, r) is not None),
             f"<script>{SCRIPT}</script></body></html>"]
    return "\n".join(parts) + "\n"


def _odd(grid: Grid, odd) -> str:
    if not odd:
        return "<p><b>Odd cells:</b> none (no mixed pair differs from both same-version neighbours).</p>"
    items = "".join(f'<li><a href="#{anchor(grid, o.label, o.sender, o.receiver)}">{escape(o.line())}</a></li>'
                    for o in odd)
    return (f"<p><b>Odd cells</b> ({len(odd)}): mixed pairs whose outcome differs from both same-version "
            f'neighbours, what mixing the versions does (framed in the grids).</p><ul class="odd-list">{items}</ul>')


def _table(grid: Grid, label: str, odd_at: set) -> str:
    head = "".join(f'<th class="col" title="{escape(grid.versions.get(r, ""))}">{escape(r)}</th>' for r in grid.pins)
    rows = []
    for s in grid.pins:
        cells = [f'<th class="row">{escape(s)}<small>{escape(grid.versions.get(s, ""))}</small></th>']
        for r in grid.pins:
            v = grid.square(label, s, r)
            if v is None:
                cells.append('<td class="none" title="not run">-</td>')
                continue
            cells.append(heat_cell(v, anchor(grid, label, s, r),
                                   ("diag" if s == r else "", "odd" if (label, s, r) in odd_at else "")))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="heat"><thead><tr><th class="pattern" colspan="{len(grid.pins) + 1}">'
            f"{escape(label)}</th></tr><tr><th class=\"corner\">sender \\ receiver</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _legend() -> str:
    items = "".join(f"<li><code>{escape(s)}</code> {escape(m)}</li>" for s, m in LEGEND)
    return ('<div class="legend"><p>Colour: the worst outcome; the darker, the higher its failure rate '
            f"(as in the matrix report).</p><ul>{items}</ul></div>")


def _panel(grid: Grid, label: str, s: str, r: str) -> str:
    v = grid.square(label, s, r)
    ev = evidence(v)
    out = [f'<section class="ev" id="{anchor(grid, label, s, r)}" data-key="{escape(ev["key"])}">',
           '<a class="close" href="#" title="close (Esc)">×</a>',
           f"<h2>{escape(label)}: {escape(s)} → {escape(r)}</h2>",
           f"<p>{escape(ev['summary'])}</p>",
           f"<p><b>why:</b> {escape(ev['reason'])}</p>"]
    if ev["first_gap"]:
        out.append(f"<p><b>first gap:</b> {escape(ev['first_gap'])}</p>")
    if ev["accounts"]:
        out.append(f"<p><b>the sender's account reached the receiver:</b> {escape(', '.join(ev['accounts']))}</p>")
    if ev["explain"]:
        out.append("<ul>" + "".join(f"<li>{escape(e)}</li>" for e in ev["explain"]) + "</ul>")
    if v.runs:
        out.append("<table><tr><th>run</th><th>outcome</th><th>detail</th></tr>")
        for i, (outcome, detail) in enumerate(zip(ev["runs"], ev["details"]), 1):
            bad = ' class="bad"' if outcome not in ("ok", "unsupported") else ""
            out.append(f"<tr{bad}><td>{i}</td><td>{escape(outcome)}</td><td>{escape(detail)}</td></tr>")
        out.append("</table>")
    out.append(f"<p><small>cell {escape(ev['key'])}: cells/*.json holds every run's whole report</small></p>")
    out.append("</section>")
    return "".join(out)
