"""A matrix as one self-contained HTML page: a heatmap of targets x pattern/transport/label,
each cell's evidence (runs, per-thread gaps, stall stacks) one click away.

No external assets (CI uploads the page as an artifact, opened offline). Evidence panels are
plain sections shown with CSS :target, so a click works even where scripts are blocked; the
few lines of script only add Escape-to-close and a status line naming the open cell.
Pure: render(matrix) -> str.
"""
from __future__ import annotations

import math
from html import escape
from itertools import groupby

from lab.matrix import Matrix
from lab.render import LEGEND, cell_text, header_line, row_label, run_detail, tally_line
from lab.verdicts import FAILURES, INFRA, RunSummary, Verdict
from scenarios import timeline as tl

# Hue per failure kind; lightness falls with the failure rate, so a 1/20 race is pale and a
# 20/20 deadlock is saturated. Non-failures have fixed colours.
HUES = {"misordered": 48, "lost": 28, "deadlock": 0, "error": 285}
FIXED = {"ok": "#cfeccf", "unsupported": "#dcdcdc", "infra": "#d6e4f0"}
THREAD_ROWS = 64            # per run; a 100-thread run would otherwise dwarf the page
LANES = 40                  # timeline lanes per run, for the same reason

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
.tl{margin:.4em 0 1.2em} .tl svg{display:block;width:100%;max-width:880px;height:auto;font:11px system-ui,sans-serif}
.tl ul{margin:.3em 0;padding-left:1.2em;font-size:12px} .tl .note{font-size:12px;color:#555;margin:.2em 0}
.tl .key span{display:inline-block;margin-right:.8em;white-space:nowrap}
.tl .key i{display:inline-block;width:18px;height:7px;margin-right:4px;vertical-align:middle}
.tl summary{cursor:pointer;color:#444}
.tl .snd{fill:#9fb6cd} .tl .rcv{fill:#2e8b57} .tl .lost{fill:#d62728} .tl .band{fill:#1b7a3d;opacity:.12}
.tl path{stroke-width:1.5;fill:none} .tl text.mk{font-weight:600} .tl .mk tspan{stroke:none}
.tl .m-up{stroke:#1b7a3d;fill:#1b7a3d} .tl .m-slow{stroke:#a66f00;fill:#a66f00}
.tl .m-fail{stroke:#c00;fill:#c00} .tl .m-end{stroke:#555;fill:#555}
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


def heat_cell(v: Verdict, href: str, classes: tuple[str, ...] = ()) -> str:
    """One coloured cell of a heatmap, linking to its evidence (`href`: an element id)."""
    style = ""
    if v.worst != "skipped":
        bg, fg = colour(v)
        style = f' style="background:{bg};color:{fg}"'
    names = " ".join((v.worst,) + tuple(c for c in classes if c))
    return (f'<td class="{escape(names)}"{style} title="{escape(v.summary_line())}">'
            f'<a href="#{href}">{escape(cell_text(v))}</a></td>')


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
            cells.append(heat_cell(v, ids[v.cell.key]))
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
        out.append(_good_timeline(v))
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
    out.append(_timeline(run))
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


# ---- a run's timeline (docs/topology.md): lanes of sends, receives and monitor events ---------

# One letter per monitor event; KEY spells them out under every chart.
MARKS = {"CONNECTED": "C", "CONNECT_DELAYED": "c", "CONNECT_RETRIED": "R", "LISTENING": "L",
         "ACCEPTED": "A", "HANDSHAKE_SUCCEEDED": "H", "HANDSHAKE_FAILED_NO_DETAIL": "F",
         "HANDSHAKE_FAILED_PROTOCOL": "F", "HANDSHAKE_FAILED_AUTH": "F", "BIND_FAILED": "!",
         "ACCEPT_FAILED": "!", "CLOSE_FAILED": "!", "DISCONNECTED": "D", "CLOSED": "X",
         "MONITOR_STOPPED": "M",
         # not libzmq's: a fault the lab applied to this side's peer, and its end (docs/faults.md)
         "FAULT_START": "[", "FAULT_END": "]"}
KEY = (("C", "connected"), ("c", "connect delayed"), ("R", "connect retried"), ("L", "listening"),
       ("A", "accepted"), ("H", "handshake succeeded"), ("F", "handshake failed"),
       ("!", "bind/accept/close failed"), ("D", "disconnected"), ("X", "closed"),
       ("M", "monitor stopped"), ("[", "fault applied (the lab's)"), ("]", "fault undone"), ("?", "other"))
# A mark's colour class (CSS above): the connection coming up, slow to, failing, going away.
MARK_CLASS = {"C": "m-up", "L": "m-up", "A": "m-up", "H": "m-up", "c": "m-slow", "R": "m-slow",
              "F": "m-fail", "!": "m-fail", "D": "m-end", "X": "m-end", "M": "m-end", "?": "m-end",
              "[": "m-fail", "]": "m-up"}
# Chart geometry, in the SVG's own units (it scales to the panel's width).
WIDTH, LEFT, RIGHT, LANE_H, AXIS_H = 880, 84, 14, 22, 34
LETTER_W = 7.0              # an 11px bold letter's advance, to keep labels from overlapping
LABEL_GAP = 10              # between two labels of one lane, so that they read as two
LANE_TITLES = {"receiver": "the receiver's socket(s)",
               "other sender": "sender-side sockets of no control thread: the shutdown message's, a shared one"}


def _good_timeline(v: Verdict) -> str:
    """A passing run's timeline, for comparison with the failing ones: only the first, and
    folded, so that a 10-run cell of a full sweep does not carry ten charts nobody asked for."""
    for i, run in enumerate(v.runs, 1):
        if run.outcome not in FAILURES and run.outcome != INFRA and isinstance(run.timeline, dict):
            return (f"<details class=\"tl\"><summary>timeline of run {i} ({escape(run.outcome)})</summary>"
                    f"{_timeline(run)}</details>")
    return ""


def _timeline(run: RunSummary) -> str:
    """The run's explanation lines, its chart and the notes on clocks and monitoring."""
    timeline = run.timeline
    if not isinstance(timeline, dict):
        return ""
    lines = _explained(run, timeline)
    out = ['<div class="tl">']
    if lines:
        out.append("<ul>" + "".join(f"<li>{escape(str(line))}</li>" for line in lines) + "</ul>")
    out += [_charts(timeline, run.threads), _notes(run.report, timeline), _key(), "</div>"]
    return "".join(out)


def _explained(run: RunSummary, timeline: dict) -> list:
    """The run's own explanation when it made one (its harness's words), else ours."""
    own = run.explain
    if isinstance(own, list):
        return own
    params = run.report.get("params") or {}
    return tl.explain(timeline, run.threads, pattern=params.get("pattern"), transport=params.get("transport"))


def _notes(report: dict, timeline: dict) -> str:
    align = timeline.get("align")
    if isinstance(align, dict) and tl.number(align.get("offset_ms")) is not None:
        error = tl.number(align.get("error_ms"))
        text = f"align: sender clock offset {tl.number(align['offset_ms']):+.3f} ms"
        text += f" ± {error:.3f} ms" if error is not None else ""
        text += f" ({align['method']})" if align.get("method") else ""
    elif report.get("topology") in (None, "threads"):
        text = "align: one process, one clock"
    else:
        text = "align: not measured"
    monitor = timeline.get("monitor")
    notes = [text, f"monitor: {monitor if monitor is not None else 'not said'}"]
    delay = tl.number(timeline.get("collector_delay_ms"))
    if delay is not None:
        notes[-1] += f" (events stamped up to {delay:.1f} ms late)"
    lag = tl.number(timeline.get("monitor_lag_ms"))
    if lag is not None:     # measured at each connect: how much an event's stamp may trail it
        notes[-1] += f"; measured lag at connect up to {lag:.1f} ms"
    dropped = timeline.get("events_dropped")
    if dropped:
        notes[-1] += f"; {dropped} later events of busy sockets not kept"
    unseen = timeline.get("unseen")
    if unseen:
        notes.append("never reported by any sender socket: " + ", ".join(map(str, unseen)))
    return "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


def _key() -> str:
    bars = "".join(f'<span><i style="background:{c}"></i>{escape(t)}</span>' for c, t in (
        ("#9fb6cd", "sending (first to last send)"), ("#2e8b57", "receiving (first to last)"),
        ("#d62728", "first pings lost"), ("#dde9e1", "when the connection really came up (events stamped late)")))
    marks = "".join(f"<span><b>{escape(m)}</b> {escape(t)}</span>" for m, t in KEY)
    return f'<p class="note key">{bars}</p><p class="note key">{marks}</p>'


class _Scale:
    """ms since t0 -> x in a chart showing [lo, hi]."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, max(hi, lo + 0.1)

    @classmethod
    def over(cls, times: list) -> "_Scale":
        return cls(min([0.0] + times), max([1.0] + times))

    def x(self, t: float) -> float:
        return LEFT + (t - self.lo) / (self.hi - self.lo) * (WIDTH - LEFT - RIGHT)

    def clamp(self, t: float) -> float:
        return min(max(t, self.lo), self.hi)

    def ticks(self, most: int = 10) -> tuple[float, list]:
        raw = (self.hi - self.lo) / most
        step = 10 ** math.floor(math.log10(raw))
        step = next(m * step for m in (1, 2, 5, 10) if m * step >= raw)
        first = math.ceil(self.lo / step) * step
        return step, [first + k * step for k in range(int((self.hi - first) / step + 1e-9) + 1)]


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _events_by_lane(timeline: dict) -> dict:
    """Events per lane key: ("receiver",), ("other sender",) for a sender-side socket of no
    control thread (the shutdown message's, a shared one), or a thread id; each sorted by
    time, unreadable ones dropped."""
    lanes: dict = {}
    for e in timeline.get("events") or []:
        if not isinstance(e, dict) or tl.number(e.get("t_ms")) is None:
            continue
        if e.get("side") == "receiver":
            key = ("receiver",)
        else:
            key = e.get("thread") if isinstance(e.get("thread"), int) else ("other sender",)
        lanes.setdefault(key, []).append(e)
    for events in lanes.values():
        events.sort(key=lambda e: e["t_ms"])
    return lanes


def _threads(timeline: dict) -> list:
    return sorted((t for t in timeline.get("threads") or [] if isinstance(t, dict) and isinstance(t.get("id"), int)),
                  key=lambda t: t["id"])


def _times(threads: list, events: dict) -> list:
    keys = ("connect_ms", "first_send_ms", "last_send_ms", "first_recv_ms", "last_recv_ms")
    out = [tl.number(t.get(k)) for t in threads for k in keys]
    out += [e["t_ms"] for lane in events.values() for e in lane]
    return [t for t in out if t is not None]


def _startup_end(threads: list, events: dict, lost: dict):
    """When every shown thread was connected and getting through (its first receive, the end
    of its lost pings, its first connection event), or None when no thread says."""
    ends = []
    for t in threads:
        ends.append(tl.number(t.get("first_recv_ms")))
        if lost.get(t["id"]):
            ends.append(_lost_span(t, lost[t["id"]])[1])
        ends += [e["t_ms"] for e in events.get(t["id"], []) if tl.event_name(e.get("event")) in tl.EXPECTED_EVENTS][:2]
    ends = [e for e in ends if e is not None]
    return max(ends) if ends else None


def _charts(timeline: dict, rows: list) -> str:
    """The whole run; first, when the connections and first pings take a small part of it
    (a run ends with the shutdown's 1 s sleep), that start drawn on its own."""
    events = _events_by_lane(timeline)
    threads = _threads(timeline)
    lost = {r["id"]: tl.lost_at_start(r) for r in rows if isinstance(r, dict) and "id" in r}
    lag = tl.stamp_lag(timeline)
    whole = _Scale.over(_times(threads[:LANES], events))
    lead = ""
    connects = [c for c in (tl.number(t.get("connect_ms")) for t in threads[:LANES]) if c is not None]
    if connects and min(connects) - whole.lo > 0.4 * (whole.hi - whole.lo):
        # Another process or container: its interpreter started after the receiver bound,
        # and that wait would squeeze the run into the chart's right edge.
        lo = max(whole.lo, min(connects) - 0.05 * (whole.hi - min(connects)))
        lead = (f'<p class="note">from {_n(lo)} ms: the senders connected {_n(min(connects))} ms after the '
                f'receiver bound (their process started later); earlier receiver events are not drawn</p>')
        whole = _Scale(lo, whole.hi)
    end = _startup_end(threads[:LANES], events, lost)
    if end is None or end - whole.lo > 0.4 * (whole.hi - whole.lo):
        return lead + _chart(threads, events, lost, whole, lag)
    start = _Scale(whole.lo, whole.lo + 1.25 * (end - whole.lo))
    return lead + (f'<p class="note">the start (first {_n(start.hi - start.lo)} ms; bars go on past the right edge)</p>'
            + _chart(threads, events, lost, start, lag)
            + f'<p class="note">the whole run ({_n(whole.hi - whole.lo)} ms)</p>'
            + _chart(threads, events, lost, whole, lag))


def _chart(threads: list, events: dict, lost: dict, scale: _Scale, lag: float = 0.0) -> str:
    shown = threads[:LANES]
    lanes = [(k[0], None, events[k]) for k in (("receiver",), ("other sender",)) if k in events]
    lanes += [(f"thread {t['id']}", t, events.get(t["id"], [])) for t in shown]
    more = len(threads) - len(shown)
    height = len(lanes) * LANE_H + AXIS_H + (LANE_H if more else 0)
    out = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline">',
           _grid(scale, len(lanes) * LANE_H)]
    for i, (label, thread, lane_events) in enumerate(lanes):
        out.append(_lane(i * LANE_H, label, thread, lane_events, scale,
                         lost.get(thread["id"]) if thread else None, lag))
    y = len(lanes) * LANE_H
    if more:
        out.append(f'<text x="{LEFT}" y="{y + 15}" fill="#555">+{more} more threads (not drawn)</text>')
        y += LANE_H
    out += [_axis(scale, y), "</svg>"]
    return "".join(out)


def _grid(scale: _Scale, bottom: float) -> str:
    return "".join(f'<line x1="{_n(scale.x(t))}" y1="0" x2="{_n(scale.x(t))}" y2="{bottom}" stroke="#eee"/>'
                   for t in scale.ticks()[1])


def _axis(scale: _Scale, y: float) -> str:
    step, ticks = scale.ticks()
    decimals = max(0, -math.floor(math.log10(step)))
    out = [f'<line x1="{LEFT}" y1="{y + 2}" x2="{WIDTH - RIGHT}" y2="{y + 2}" stroke="#888"/>']
    for t in ticks:
        x = _n(scale.x(t))
        out.append(f'<line x1="{x}" y1="{y + 2}" x2="{x}" y2="{y + 6}" stroke="#888"/>'
                   f'<text x="{x}" y="{y + 17}" text-anchor="middle" fill="#444">{t:.{decimals}f}</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{y + 31}" text-anchor="end" fill="#444">'
               "ms since t0 (the receiver's bind), on the receiver's clock</text>")
    return "".join(out)


def _lane(y: float, label: str, thread: dict | None, events: list, scale: _Scale, lost, lag: float) -> str:
    stripe = f'<rect x="0" y="{y}" width="{WIDTH}" height="{LANE_H}" fill="#f7f7f7"/>' if y % (2 * LANE_H) else ""
    cls = ' class="lost"' if lost else ""
    title = f"<title>{escape(LANE_TITLES[label])}</title>" if label in LANE_TITLES else ""
    out = [f'<g class="lane" data-lane="{escape(label)}">', stripe,
           f'<text x="{LEFT - 6}" y="{y + 16}" text-anchor="end"{cls}>{title}{escape(label)}</text>']
    if thread is not None:
        out.append(_link_band(y, thread["id"], events, scale, lag))
        out.append(_bars(y, thread, scale, lost))
    out.append(_marks(y, [e for e in events if scale.lo <= e["t_ms"] <= scale.hi], scale))
    out.append("</g>")
    return "".join(out)


def _span(scale: _Scale, a, b, y: float, h: float, cls: str, title: str) -> str:
    """[a, b] as a bar, cut to the chart; nothing when it lies outside or is not known."""
    if a is None or b is None or b < scale.lo or a > scale.hi:
        return ""
    x = scale.x(scale.clamp(a))
    w = max(scale.x(scale.clamp(b)) - x, 2.0)         # a one-ping span stays visible
    return (f'<rect class="{cls}" x="{_n(x)}" y="{y}" width="{_n(w)}" height="{h}">'
            f"<title>{escape(title)}</title></rect>")


def _bars(y: float, thread: dict, scale: _Scale, lost) -> str:
    num = tl.number
    first, last = num(thread.get("first_send_ms")), num(thread.get("last_send_ms"))
    got, until = num(thread.get("first_recv_ms")), num(thread.get("last_recv_ms"))
    seq = thread.get("first_recv_seq")
    out = [_span(scale, first, last, y + 11, 7, "snd", f"sent from {_n(first or 0)} to {_n(last or 0)} ms"),
           _span(scale, got, until, y + 19, 2.5, "rcv",
                 f"received from {_n(got or 0)} ms (#{seq}) to {_n(until or 0)} ms")]
    if lost:
        a, b = _lost_span(thread, lost)
        first_seq, last_seq, next_seq = lost
        out.append(_span(scale, a, b, y + 10, 9, "lost", f"#{first_seq}–#{last_seq} lost"
                         + (f", first received #{next_seq}" if next_seq else ", nothing arrived")))
    return "".join(out)


def _lost_span(thread: dict, lost: tuple) -> tuple:
    """From the first lost ping's send to the first received one's (as far as the 64 kept
    send times and the thread's last send tell)."""
    sends = [tl.number(s) for s in thread.get("send_ms") or []] if isinstance(thread.get("send_ms"), list) else []
    first, last, got = lost

    def sent(seq):
        return sends[seq - 1] if 1 <= seq <= len(sends) else None

    start = sent(first) if sent(first) is not None else tl.number(thread.get("first_send_ms"))
    if got is None:
        return start, tl.number(thread.get("last_send_ms"))
    end = sent(got) or sent(last) or next((s for s in reversed(sends) if s is not None), None)
    return start, end


def _link_band(y: float, tid: int, events: list, scale: _Scale, lag: float) -> str:
    """Where the thread's connection really came up: its stamp is late by up to `lag`, so the
    event happened somewhere in the band [stamp - lag, stamp] (explain() says the same)."""
    t = tl.link_time({"events": events}, tid)
    if t is None or lag < 0.05:
        return ""
    return _span(scale, t - lag, t, y + 9, 12, "band", f"connection up somewhere in {_n(t - lag)}–{_n(t)} ms "
                 f"(monitor events stamped up to {_n(lag)} ms late)")


def _marks(y: float, events: list, scale: _Scale) -> str:
    """A tick per event at its time (one path per colour; ticks on the same half unit drawn
    once: a 100-thread receiver has hundreds); labels per cluster: an event whose label would
    touch the one before joins it (a burst of ACCEPTED reads 'A×10'), so labels never overlap."""
    ticks: dict = {}
    clusters: list = []
    for e in events:
        x = scale.x(e["t_ms"])
        mark = MARKS.get(tl.event_name(e.get("event")), "?")
        ticks.setdefault(MARK_CLASS[mark], set()).add(round(x * 2) / 2)
        if clusters and x < clusters[-1][0] + len(_cluster_label(clusters[-1][1])) * LETTER_W + LABEL_GAP:
            clusters[-1][1].append((mark, e))
        else:
            clusters.append((x, [(mark, e)]))
    out = [f'<path class="{cls}" d="{"".join(f"M{_n(x)} {y + 9}v12" for x in sorted(xs))}"/>'
           for cls, xs in sorted(ticks.items())]
    for x, members in clusters:
        label = _cluster_label(members)
        if x + len(label) * LETTER_W > WIDTH:
            where = f'x="{_n(x - 1.5)}" text-anchor="end"'
        else:
            where = f'x="{_n(x + 1.5)}"'
        out.append(f'<text class="mk" {where} y="{y + 8}"><title>{escape(_cluster_title(members))}</title>'
                   f"{_cluster_spans(members)}</text>")
    return "".join(out)


def _cluster_counts(members: list) -> dict:
    counts: dict = {}
    for mark, _ in members:
        counts[mark] = counts.get(mark, 0) + 1
    return counts


def _cluster_label(members: list) -> str:
    return " ".join(m if n == 1 else f"{m}×{n}" for m, n in _cluster_counts(members).items())


def _cluster_spans(members: list) -> str:
    """The label with each letter in its own colour ('c C H': slow, then up)."""
    return " ".join(f'<tspan class="{MARK_CLASS[m]}">{escape(m if n == 1 else f"{m}×{n}")}</tspan>'
                    for m, n in _cluster_counts(members).items())


def _cluster_title(members: list, most: int = 8) -> str:
    lines = [f"{e['t_ms']:.2f} ms {tl.event_name(e.get('event'))} {e.get('endpoint') or ''}".rstrip()
             for _, e in members[:most]]
    if len(members) > most:
        lines.append(f"+{len(members) - most} more")
    return "\n".join(lines)
