"""lab.report_html: the self-contained heatmap page; a slow test opens it in headless Chromium."""
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from factories import make_matrix
from lab import report_html

SPEC = {
    ("pyzmq-25.1.2", "pair", "inproc"): ["deadlock"] * 5,
    ("pyzmq-25.1.2", "pubsub", "tcp"): ["lost"] * 2 + ["ok"] * 3,
    ("pyzmq-25.1.2", "pushpull", "tcp"): ["ok"] * 5,
    ("pyzmq-25.1.2", "clientserver", "tcp", "shared"): ["unsupported"],
    ("pyzmq-27.3.0", "pair", "inproc"): "skipped",
    ("pyzmq-27.3.0", "pubsub", "tcp"): ["lost"] * 5,
}


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append(dict(attrs))


def page():
    return report_html.render(make_matrix(SPEC))


def test_self_contained_and_every_cell_links_to_its_evidence():
    html = page()
    p = Collect()
    p.feed(html)
    # no external assets: nothing loaded from anywhere
    assert not any(a.get("src") or (t == "link") for t, a in zip(p.tags, p.attrs))
    assert not re.search(r"https?://", html)
    links = [a["href"][1:] for t, a in zip(p.tags, p.attrs) if t == "a" and a.get("href", "#") != "#"]
    sections = {a["id"]: a["data-key"] for t, a in zip(p.tags, p.attrs) if t == "section"}
    assert len(links) == 6 and set(links) == set(sections)
    assert set(sections.values()) >= {"pyzmq-25.1.2/pair/inproc/default", "pyzmq-27.3.0/pubsub/tcp/default"}


def test_evidence_has_runs_thread_gaps_and_stacks():
    html = page()
    deadlock = html[html.index('data-key="pyzmq-25.1.2/pair/inproc/default"'):]
    deadlock = deadlock[: deadlock.index("</section>")]
    assert deadlock.count("<h3>run ") == 5 and "stacks (2)" in deadlock and "poller.poll()" in deadlock
    lost = html[html.index('data-key="pyzmq-25.1.2/pubsub/tcp/default"'):]
    lost = lost[: lost.index("</section>")]
    assert "got #17 expecting #1" in lost and "failure rate 40%" in lost


def test_colour_follows_kind_and_rate():
    from factories import make_verdict
    pale, _ = report_html.colour(make_verdict(["lost"] + ["ok"] * 9))
    dark, text = report_html.colour(make_verdict(["lost"] * 10))
    assert pale.startswith("hsl(28,") and dark.startswith("hsl(28,")
    assert int(pale.split(",")[-1].rstrip("%)")) > int(dark.split(",")[-1].rstrip("%)"))
    assert text == "#fff"
    assert report_html.colour(make_verdict(["deadlock"] * 3))[0].startswith("hsl(0,")
    assert report_html.colour(make_verdict(["ok"] * 3))[0] == report_html.FIXED["ok"]


def test_text_is_escaped():
    from factories import make_cell, make_reports
    from lab.matrix import build
    from lab.verdicts import judge_runs
    cell = make_cell(pattern="pushpull")
    v = judge_runs(cell, make_reports(["error"], cell, error="<script>alert(1)</script>"))
    html = report_html.render(build("r", "local", [v]))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed: apt-get install -y chromium")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1400,900"]


@pytest.mark.slow
def test_chromium_renders_the_heatmap_and_opens_evidence(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page())
    shot = tmp_path / "shot.png"
    subprocess.run(chromium() + [f"--screenshot={shot}", path.as_uri()], check=True,
                   capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # The DOM after scripts ran, opened on one cell's evidence as a click would.
    dom = subprocess.run(chromium() + ["--dump-dom", path.as_uri() + "#e0"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert "evidence: pyzmq-25.1.2/pair/inproc/default" in dom        # the script saw the click target
    for text in ("DEADLOCK 5/5", "LOST 2/5", "ok 5/5", "unsup", "skip", "default", "clientserver"):
        assert text in dom


# ---- the run's timeline (docs/topology.md) --------------------------------------------------

def with_timeline(report, start=0.5, step=0.05, events=True, **extra):
    """`report` with a timeline shaped like a real pubsub/tcp run: thread i connects at
    start + 0.3 i, sends every `step` ms, and its handshake completes as its first received
    seq (first_gap["got"], else #1) goes out; the receiver accepts each connection; the
    shutdown's 1 s sleep puts the receiver's MONITOR_STOPPED far right."""
    threads, evs = [], [{"t_ms": 0.1, "side": "receiver", "thread": None, "event": "LISTENING",
                         "endpoint": "tcp://127.0.0.1:40001", "value": 0}]
    m = report["params"]["msgs"]
    for row in report["threads"]:
        i, got = row["id"], (row["first_gap"] or {}).get("got") or 1
        connect = start + 0.3 * i
        sends = [connect + 0.05 + step * k for k in range(m)]
        threads.append({"id": i, "connect_ms": connect, "first_send_ms": sends[0], "last_send_ms": sends[-1],
                        "send_ms": sends[:64], "first_recv_ms": sends[got - 1] + 0.1, "first_recv_seq": got,
                        "last_recv_ms": sends[-1] + 0.1})
        for t, side, name in ((connect + 0.1, "sender", "CONNECTED"), (connect + 0.12, "receiver", "ACCEPTED"),
                              (sends[got - 1] - 0.01, "sender", "HANDSHAKE_SUCCEEDED")):
            evs.append({"t_ms": t, "side": side, "thread": i if side == "sender" else None, "event": name,
                        "endpoint": "tcp://127.0.0.1:40001", "value": 0})
    evs.append({"t_ms": sends[-1] + 1000, "side": "receiver", "thread": None, "event": "MONITOR_STOPPED",
                "endpoint": "tcp://127.0.0.1:40001", "value": 0})
    timeline = {"clock": "CLOCK_REALTIME, ms since t0 (the receiver's bind)", "t0_ns": 1, "align": None,
                "monitor": "on", "collector_delay_ms": 0.2, "threads": threads,
                "events": evs if events else [], "unseen": []}
    timeline.update(extra)
    return dict(report, timeline=timeline)


def timeline_page(outcomes=("lost", "ok"), threads=4, lost_threads=(1, 2), transform=with_timeline, **kw):
    from factories import make_cell, make_report
    from lab.matrix import build
    from lab.verdicts import judge_runs
    cell = make_cell(pattern="pubsub", threads=threads, msgs=100)
    reports = [transform(make_report(o, cell, lost_threads=lost_threads), **kw) for o in outcomes]
    return report_html.render(build("r", "local", [judge_runs(cell, reports)])), reports


def svgs(html):
    return re.findall(r"<svg.*?</svg>", html, flags=re.S)


def lanes(svg):
    return re.findall(r'<g class="lane" data-lane="([^"]+)"', svg)


def test_a_run_with_a_timeline_draws_a_lane_per_thread_under_its_explanation():
    from lab import schemas
    html, reports = timeline_page(outcomes=("lost",))
    schemas.validate("run", reports[0])         # the fixture is a run report as the harness makes them
    charts = svgs(html)
    assert charts, "no chart drawn"
    for chart in charts:
        assert lanes(chart) == ["receiver", "thread 0", "thread 1", "thread 2", "thread 3"]
        assert "ms since t0" in chart
    # explain()'s own words, above the chart
    line = ("thread 1: #1–#12 sent before its handshake completed (+0.8 ms after connect, stamped up to 0.2 ms "
            "late), #13–#16 sent too close to its handshake to tell which came first; first received #17")
    assert line in html and html.index(line) < html.index("<svg")
    # lost pings drawn red on the threads that lost them, and only there
    lost_lanes = [re.search(r'data-lane="([^"]+)"', g).group(1)
                  for g in re.findall(r'<g class="lane".*?</g>', charts[0], flags=re.S) if 'rect class="lost"' in g]
    assert lost_lanes == ["thread 1", "thread 2"]
    # the event markers, with a key
    assert ">C<" in charts[0].replace("</title>", ">") and "handshake succeeded" in html
    assert "align: one process, one clock" in html and "monitor: on" in html


def test_the_start_gets_its_own_chart_when_the_run_dwarfs_it():
    html, _ = timeline_page(outcomes=("lost",))
    assert len(svgs(html)) == 2 and "the start (first" in html and "the whole run (" in html

    def silent(report):     # thread 1 got nothing: its loss spans its sending, and nothing comes later
        report["threads"][1].update(received=0, missing=100, first_gap={"expected": 1, "got": None})
        out = with_timeline(report)
        out["timeline"]["threads"][1].update(first_recv_ms=None, first_recv_seq=None, last_recv_ms=None)
        out["timeline"]["events"] = [e for e in out["timeline"]["events"] if e["event"] != "MONITOR_STOPPED"]
        return out
    whole, _ = timeline_page(outcomes=("lost",), transform=silent)
    assert len(svgs(whole)) == 1 and "the start (first" not in whole
    assert "thread 1: none of #1–#100 arrived (all sent by +5.0 ms); handshake at +0.0 ms" in whole


def test_the_start_ends_with_the_connections_not_with_the_closing():
    def closing(report):    # libzmq 4.2.5: no handshake; each sender's CLOSED right after its last send
        out = with_timeline(report)
        timeline = out["timeline"]
        timeline["events"] = [e for e in timeline["events"] if e["event"] != "HANDSHAKE_SUCCEEDED"]
        timeline["events"] += [dict(timeline["events"][1], event="CLOSED", thread=t["id"], t_ms=t["last_send_ms"] + 0.2)
                               for t in timeline["threads"]]
        return out
    html, reports = timeline_page(outcomes=("lost",), transform=closing)
    first_receive = max(t["first_recv_ms"] for t in reports[0]["timeline"]["threads"])
    window = float(re.search(r"the start \(first ([\d.]+) ms", html).group(1))
    assert first_receive < window < 1.5 * first_receive


def test_lanes_sorted_by_id_and_at_most_forty():
    def shuffled(report, **kw):
        out = with_timeline(report, **kw)
        out["timeline"]["threads"].reverse()
        return out
    html, _ = timeline_page(outcomes=("lost",), threads=55, transform=shuffled)
    chart = svgs(html)[0]
    assert lanes(chart) == ["receiver"] + [f"thread {i}" for i in range(40)]
    assert "+15 more threads (not drawn)" in chart


def test_the_runs_own_explanation_wins_and_notes_say_clock_and_unseen_events():
    def annotated(report):
        out = with_timeline(report, align={"offset_ms": 0.0125, "error_ms": 0.04, "method": "ntp, best of 5"},
                            unseen=["HANDSHAKE_SUCCEEDED"], monitor="on", events_dropped=7,
                            monitor_lag_ms=0.34)
        # the shutdown sender's own socket: a sender-side event of no control thread
        out["timeline"]["events"].append(dict(out["timeline"]["events"][1], thread=None, t_ms=1003.0))
        return dict(out, explain=["thread 9: <said by the harness>"], topology="processes")
    html, _ = timeline_page(outcomes=("lost",), transform=annotated)
    assert "thread 9: &lt;said by the harness&gt;" in html and "thread 1: #1–#16" not in html
    assert "align: sender clock offset +0.013 ms ± 0.040 ms (ntp, best of 5)" in html
    assert "never reported by any sender socket: HANDSHAKE_SUCCEEDED" in html
    assert "measured lag at connect up to 0.3 ms; 7 later events of busy sockets not kept" in html
    assert lanes(svgs(html)[-1])[:3] == ["receiver", "other sender", "thread 0"]


def test_event_details_are_escaped_and_the_page_stays_self_contained():
    def hostile(report):
        out = with_timeline(report)
        for e in out["timeline"]["events"]:
            e["endpoint"] = "tcp://<b>evil</b>:1"
        return out
    html, _ = timeline_page(outcomes=("lost",), transform=hostile)
    assert "<b>evil" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    assert not re.search(r"https?://", html)


def test_a_passing_run_s_timeline_is_folded_and_only_the_first():
    html, _ = timeline_page(outcomes=("lost", "ok", "ok"))
    assert html.count("<details class=\"tl\"><summary>timeline of run 2 (ok)") == 1
    assert "timeline of run 3" not in html
    assert len(svgs(html)) == 4          # run 1 and run 2: start and whole run each


def test_a_run_without_a_timeline_renders_as_before():
    with_tl, reports = timeline_page(outcomes=("lost", "ok"))
    from factories import make_cell
    from lab.matrix import build
    from lab.verdicts import judge_runs
    bare = [{k: v for k, v in r.items() if k != "timeline"} for r in reports]
    cell = make_cell(pattern="pubsub", threads=4, msgs=100)
    without = report_html.render(build("r", "local", [judge_runs(cell, bare)]))
    assert "<svg" not in without and 'class="tl"' not in without
    stripped = re.sub(r'<details class="tl">.*?</details>|<div class="tl">.*?</div>', "", with_tl, flags=re.S)
    assert stripped == without           # the timeline adds its blocks and changes nothing else


def test_a_late_stamping_monitor_shows_where_the_connection_really_came_up():
    html, _ = timeline_page(outcomes=("lost",), collector_delay_ms=0.0, monitor_lag_ms=0.5)
    bands = re.findall(r'<rect class="band"[^>]*><title>([^<]*)</title>', svgs(html)[0])
    assert len(bands) == 4 and "stamped up to 0.5 ms late" in bands[0]
    punctual, _ = timeline_page(outcomes=("lost",), collector_delay_ms=0.0)
    assert 'class="band"' not in punctual


def test_a_label_at_the_right_edge_ends_at_its_mark():
    def shutdown_last(report):      # the shutdown sender's socket: the run's very last events
        out = with_timeline(report)
        events = out["timeline"]["events"]
        end = max(e["t_ms"] for e in events)
        events += [dict(events[1], thread=None, event=name, t_ms=end + 0.1 * k)
                   for k, name in enumerate(("CONNECT_DELAYED", "CONNECTED", "HANDSHAKE_SUCCEEDED"), 1)]
        return out
    html, _ = timeline_page(outcomes=("lost",), transform=shutdown_last)
    lane = re.search(r'<g class="lane" data-lane="other sender">.*?</g>', svgs(html)[-1], flags=re.S).group(0)
    label = re.search(r'<text class="mk" x="([\d.]+)" text-anchor="end"', lane)
    assert label and float(label.group(1)) <= report_html.WIDTH - report_html.RIGHT
    assert ">c</tspan> <tspan class=\"m-up\">C</tspan> <tspan class=\"m-up\">H</tspan>" in lane


def test_senders_that_started_late_do_not_squeeze_the_chart():
    # containers/processes: the receiver binds at 0, the senders start much later
    def late(report):
        out = with_timeline(report)
        for t in out["timeline"]["threads"]:
            for k in ("connect_ms", "first_send_ms", "last_send_ms", "first_recv_ms", "last_recv_ms"):
                if t.get(k) is not None:
                    t[k] += 1500.0
            t["send_ms"] = [x + 1500.0 for x in t["send_ms"]]
        for e in out["timeline"]["events"]:
            if e["side"] == "sender":
                e["t_ms"] += 1500.0
        return out
    html, _ = timeline_page(outcomes=("lost",), transform=late)
    assert "the senders connected 150" in html and "earlier receiver events are not drawn" in html
    plain, _ = timeline_page(outcomes=("lost",))
    assert "earlier receiver events are not drawn" not in plain
