"""A matrix as one self-contained HTML page: a heatmap of targets x pattern/transport/label,
each cell's evidence (runs, per-thread gaps, stall stacks) one click away.

No external assets (CI uploads the page as an artifact, opened offline). Evidence panels are
plain sections shown with CSS :target, so a click works even where scripts are blocked; the
few lines of script only add Escape-to-close and a status line naming the open cell.
Pure: render(matrix) -> str.
"""
from __future__ import annotations

from html import escape
from itertools import groupby

from lab.matrix import Matrix
from lab.render import LEGEND, cell_text, header_line, row_label, run_detail, tally_line
from lab.verdicts import FAILURES, INFRA, RunSummary, Verdict

# Hue per failure kind; lightness falls with the failure rate, so a 1/20 race is pale and a
# 20/20 deadlock is saturated. Non-failures have fixed colours.
HUES = {"misordered": 48, "lost": 28, "deadlock": 0, "error": 285}
FIXED = {"ok": "#cfeccf", "unsupported": "#dcdcdc", "infra": "#d6e4f0"}
THREAD_ROWS = 64            # per run; a 100-thread run would otherwise dwarf the page

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#555;margin:.2em 0}
.heatmap{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start;margin:1em 0}
table.heat{border-collapse:collapse}
.heat th,.heat td{border:1px solid #fff;padding:3px 6px;text-align:center;white-space:nowrap}
.heat thead th{background:#f3f3f3;font-weight:600;font-size:12px}
.heat th.row{text-align:left;background:#f3f3f3}
.heat th.row small{display:block;font-weight:400;color:#666}
.heat td a{display:block;color:inherit;text-decoration:none;font-size:12px;min-width:5.5em}
.heat td.skipped{background:repeating-linear-gradient(45deg,#f6f6f6 0 6px,#e9e9e9 6px 12px);color:#777}
.heat td.none{color:#bbb} .heat th.pattern{background:#e4e4e4;font-size:13px}
.heat td:hover{outline:2px solid #333}
.legend span{display:inline-block;padding:1px 6px;margin:2px 6px 2px 0;border-radius:3px}
.ev{display:none} .ev:target{display:block;position:fixed;top:0;right:0;bottom:0;
 width:min(960px,96vw);overflow:auto;background:#fff;box-shadow:-4px 0 16px #0004;padding:1em 1.5em;z-index:9}
.ev h2{font-size:1.1em;margin:.2em 2em .4em 0;word-break:break-all}
.ev table{border-collapse:collapse;margin:.4em 0 1em;font-size:12px}
.ev th,.ev td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.ev tr.bad td{background:#fde8e8} .ev tr.infra td{background:#e6eef6}
.close{position:absolute;top:.6em;right:1em;font-size:1.6em;text-decoration:none;color:#333}
pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:11px;max-height:24em}
#status{color:#555;font-style:italic}
"""

SCRIPT = """
(function(){
  var status=document.getElementById('status');
  function show(){
    var id=location.hash.slice(1), el=id&&document.getElementById(id);
    status.textContent=el&&el.dataset.key?'evidence: '+el.dataset.key:'click a cell for its evidence';
  }
  window.addEventListener('hashchange',show);
  document.addEventListener('keydown',function(e){if(e.key==='Escape'&&location.hash)location.hash='';});
  show();
})();
"""


def colour(verdict: Verdict) -> tuple[str, str]:
    """(background, text colour) for a cell."""
    worst = verdict.worst
    if verdict.problems or worst == "error":
        hue, rate = HUES["error"], max(verdict.rate, 0.5)
    elif worst in HUES:
        hue, rate = HUES[worst], verdict.rate
    else:
        return FIXED.get(worst, "#fff"), "#222"
    lightness = round(88 - 46 * rate)
    return f"hsl({hue},75%,{lightness}%)", ("#fff" if lightness < 58 else "#222")


def render(matrix: Matrix) -> str:
    ids = {v.cell.key: f"e{i}" for i, v in enumerate(matrix.verdicts)}
    title = f"zmqlab run {matrix.run_id}"
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f'<p class="meta">{escape(header_line(matrix).split(" · ", 1)[-1])}</p>',
             f'<p class="meta" id="tally">{escape(tally_line(matrix))}</p>',
             '<p id="status">click a cell for its evidence</p>',
             _heatmap(matrix, ids), _legend(),
             *(_evidence(v, ids[v.cell.key]) for v in matrix.verdicts),
             f"<script>{SCRIPT}</script></body></html>"]
    return "\n".join(parts) + "\n"


def _heatmap(matrix: Matrix, ids: dict) -> str:
    """One table per pattern (a full sweep has ~40 columns, wider than any screen), laid out
    side by side while they fit; each repeats the target rows."""
    if not matrix.columns:
        return "<p>(no cells)</p>"
    tables = [_pattern_table(matrix, ids, pattern, list(cols))
              for pattern, cols in groupby(matrix.columns, key=lambda c: c[0])]
    return f'<div class="heatmap">{"".join(tables)}</div>'


def _pattern_table(matrix: Matrix, ids: dict, pattern: str, cols: list) -> str:
    transports = "".join(f'<th colspan="{len(list(g))}">{escape(t)}</th>'
                         for t, g in groupby(cols, key=lambda c: c[1]))
    head = (f'<thead><tr><th rowspan="3" class="corner">target</th>'
            f'<th colspan="{len(cols)}" class="pattern">{escape(pattern)}</th></tr>'
            f'<tr>{transports}</tr><tr>{"".join(f"<th>{escape(c[2])}</th>" for c in cols)}</tr></thead>')
    body = []
    for target in matrix.rows:
        label = row_label(matrix, target)
        extra = label[len(target):].strip(" ()")
        cells = [f'<th class="row">{escape(target)}<small>{escape(extra)}</small></th>']
        for c in cols:
            v = matrix.lookup(target, c)
            if v is None:
                cells.append('<td class="none" title="not run in this sweep">-</td>')
                continue
            style = ""
            if v.worst != "skipped":
                bg, fg = colour(v)
                style = f' style="background:{bg};color:{fg}"'
            cells.append(f'<td class="{escape(v.worst)}"{style} title="{escape(v.summary_line())}">'
                         f'<a href="#{ids[v.cell.key]}">{escape(cell_text(v))}</a></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="heat">{head}<tbody>{"".join(body)}</tbody></table>'


def _legend() -> str:
    swatches = [("ok", FIXED["ok"], "#222"), ("unsupported", FIXED["unsupported"], "#222"),
                ("infra (not judged)", FIXED["infra"], "#222")]
    for kind in FAILURES:
        for rate in (0.2, 1.0):
            lightness = round(88 - 46 * rate)
            swatches.append((f"{kind} {round(rate * 100)}%", f"hsl({HUES[kind]},75%,{lightness}%)",
                             "#fff" if lightness < 58 else "#222"))
    spans = "".join(f'<span style="background:{bg};color:{fg}">{escape(t)}</span>' for t, bg, fg in swatches)
    items = "".join(f"<li><code>{escape(s)}</code> {escape(m)}</li>" for s, m in LEGEND)
    return (f'<div class="legend"><p>{spans}<span class="skipped" style="background:#eee">skipped</span>'
            f"</p><p>Colour: the worst outcome; the darker, the higher its failure rate.</p>"
            f"<ul>{items}</ul></div>")


def _evidence(v: Verdict, anchor: str) -> str:
    c = v.cell
    out = [f'<section class="ev" id="{anchor}" data-key="{escape(c.key)}">',
           '<a class="close" href="#" title="close (Esc)">×</a>',
           f"<h2>{escape(c.key)}</h2><p>{escape(v.summary_line())}</p>",
           f"<p>{c.threads} threads × {c.msgs} messages, {v.n} run(s)"]
    if v.n:
        counts = ", ".join(f"{o} {k}" for o, k in v.counts.items() if k and o != INFRA)
        out.append(f"; {escape(counts)}; failure rate {v.rate:.0%} "
                   f"(95% CI {v.rate_low:.0%}–{v.rate_high:.0%})")
    if v.infra:
        out.append(f"; {v.infra} more run(s) lost to the infrastructure, not counted")
    if v.versions:
        out.append(f"; pyzmq {escape(v.versions['pyzmq'])}, libzmq {escape(v.versions['libzmq'])}")
    out.append("</p>")
    for problem in v.problems:
        out.append(f'<p class="bad">lab problem: {escape(problem)}</p>')
    if v.runs:
        out.append("<table><tr><th>run</th><th>outcome</th><th>by</th><th>seconds</th><th>detail</th></tr>")
        for i, run in enumerate(v.runs, 1):
            bad = ' class="bad"' if run.outcome in FAILURES else ' class="infra"' if run.outcome == INFRA else ""
            out.append(f"<tr{bad}><td>{i}</td><td>{escape(run.outcome)}</td><td>{escape(run.classified_by)}"
                       f"</td><td>{run.duration_s:.2f}</td><td>{escape(run_detail(run))}</td></tr>")
        out.append("</table>")
        for i, run in enumerate(v.runs, 1):
            if run.outcome in FAILURES or run.outcome == INFRA:
                out.append(_run_evidence(i, run))
    out.append("</section>")
    return "".join(out)


def _run_evidence(i: int, run: RunSummary) -> str:
    out = [f"<h3>run {i}: {escape(run.outcome)}</h3>"]
    if run.threads:
        out.append("<table><tr><th>thread</th><th>state</th><th>attempted</th><th>completed</th>"
                   "<th>received</th><th>missing</th><th>dups</th><th>reorders</th><th>first gap</th></tr>")
        for t in run.threads[:THREAD_ROWS]:
            gap = t["first_gap"]
            gap_text = "" if gap is None else (f"got #{gap['got']} expecting #{gap['expected']}"
                                               if gap["got"] is not None else f"nothing, expecting #{gap['expected']}")
            bad = ' class="bad"' if gap or t["missing"] or t["state"] not in ("done",) else ""
            out.append(f"<tr{bad}><td>{t['id']}</td><td>{escape(t['state'])}</td><td>{t['attempted']}</td>"
                       f"<td>{t['completed']}</td><td>{t['received']}</td><td>{t['missing']}</td>"
                       f"<td>{t['duplicates']}</td><td>{t['reorders']}</td><td>{escape(gap_text)}</td></tr>")
        out.append("</table>")
        if len(run.threads) > THREAD_ROWS:
            out.append(f"<p>+{len(run.threads) - THREAD_ROWS} more threads (see the cell's JSON)</p>")
    if run.outcome == "error":
        out.append(f"<pre>{escape(run.error)}</pre>")
    if run.outcome == INFRA:
        out.append(f"<p>lost to the infrastructure, not counted against the target: {escape(run.reason)}</p>")
    if run.stall:
        stacks = run.stall["stacks"] or {}
        out.append(f"<p>no progress for {run.stall['since_progress_s']:g}s</p>")
        if stacks:
            text = "\n\n".join(f"--- {name} ---\n{stack}" for name, stack in stacks.items())
            out.append(f"<details><summary>stacks ({len(stacks)})</summary><pre>{escape(text)}</pre></details>")
    return "".join(out)
