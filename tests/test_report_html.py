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
