"""Socket options as run flags (scenarios/options.py, flags.py, the harness's socket factory) and
the REQ/REP pattern: flag parsing and its cross-checks (pure), the options really set on the
sockets a run makes (getsockopt in the pinned pyzmq-25.1.2 wheel's venv), heartbeats on a
libzmq older than 4.2 reported `unsupported`, and reqrep delivering everything."""
import json
import os
import subprocess

import pytest

from lab import schemas
from lab.backends.local import REPO
from lab.cells import Cell
from lab.requests import RunSettings
from lab.runner import run_cell
from scenarios import flags
from scenarios.options import OptionError, SockOpts, from_args

BASE = ["--pattern", "pushpull", "--transport", "tcp"]


# ---- flags: parsing and cross-checks --------------------------------------------------------------

def test_flags_parse_into_one_value_and_the_report_states_them():
    args = flags.parse(BASE + ["--heartbeat", "100:300:1000", "--immediate", "--reconnect-ivl", "50", "--hwm", "10"])
    assert args.sockopts == SockOpts(heartbeat=(100, 300, 1000), immediate=True, reconnect_ivl=50, hwm=10)
    assert flags.params(args)["sockopts"] == {"heartbeat": [100, 300, 1000], "immediate": True,
                                              "reconnect_ivl": 50, "hwm": 10}
    assert from_args(args) == args.sockopts
    nodrop = flags.parse(["--pattern", "pubsub", "--sync", "xpub", "--xpub-nodrop", "--nowait"])
    assert nodrop.sockopts == SockOpts(xpub_nodrop=True) and nodrop.sockopts.label == "+nodrop"


def test_a_run_without_the_flags_states_exactly_what_it_did_before():
    args = flags.parse(BASE)
    assert args.sockopts == SockOpts() and not args.sockopts
    assert list(flags.params(args)) == ["pattern", "transport", "threads", "msgs", "poll", "sync", "variant",
                                        "sleep", "stall", "linger", "rate", "mutex", "nowait", "inject", "topology"]


@pytest.mark.parametrize("argv, message", [
    (["--heartbeat", "100", "--transport", "inproc"], "--heartbeat: for connection-oriented transports only (ipc, tcp), not inproc"),
    (["--immediate", "--transport", "inproc"], "--immediate: for connection-oriented transports only"),
    (["--reconnect-ivl", "10", "--transport", "inproc"], "--reconnect-ivl: for connection-oriented"),
    (["--heartbeat", "abc"], "--heartbeat takes IVL[:TIMEOUT[:TTL]] in whole milliseconds, not 'abc'"),
    (["--heartbeat", "1:2:300:4"], "--heartbeat takes IVL[:TIMEOUT[:TTL]]"),
    (["--heartbeat", "0"], "IVL and TIMEOUT must be 1 ms or more"),
    (["--heartbeat", "100:0"], "IVL and TIMEOUT must be 1 ms or more"),
    (["--heartbeat", "100:300:99"], "TTL must be 100..6553599 ms"),
    (["--heartbeat", "100:300:6553600"], "TTL must be 100..6553599 ms"),
    (["--reconnect-ivl", "-2"], "--reconnect-ivl must be -1 (never reconnect) or 0 ms or more"),
    (["--hwm", "-1"], "--hwm must be 0 (no limit) or more"),
    (["--hwm", "ten"], "invalid int value: 'ten'"),
    (["--xpub-nodrop"], "--xpub-nodrop applies to the senders' XPUB: --pattern pubsub --sync xpub only"),
    (["--xpub-nodrop", "--pattern", "pubsub"], "--xpub-nodrop applies to the senders' XPUB"),
])
def test_bad_options_are_one_line_flag_errors(argv, message):
    with pytest.raises(flags.FlagError) as info:
        flags.parse(BASE + argv)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_which_socket_gets_which_option():
    opts = SockOpts(heartbeat=(100, 300), immediate=True, reconnect_ivl=50, hwm=10, xpub_nodrop=True)
    assert opts.settings("XPUB", "sender") == [
        ("HEARTBEAT_IVL", 100), ("HEARTBEAT_TIMEOUT", 300), ("SNDHWM", 10), ("RCVHWM", 10),
        ("IMMEDIATE", 1), ("RECONNECT_IVL", 50), ("XPUB_NODROP", 1)]
    assert ("XPUB_NODROP", 1) not in opts.settings("PUB", "sender")
    # the bound receiver: heartbeats and the marks; it neither connects nor reconnects
    assert opts.settings("SUB", "receiver") == [("HEARTBEAT_IVL", 100), ("HEARTBEAT_TIMEOUT", 300),
                                                ("SNDHWM", 10), ("RCVHWM", 10)]
    assert SockOpts().settings("PUSH", "sender") == []


def test_labels_round_trip_through_the_flags():
    for label in ("+hb100", "+hb100-300-1000+immediate", "+rivl-1+hwm0", "+hb5+immediate+rivl50+hwm10"):
        opts = SockOpts.from_label(label)
        assert opts.label == label
        assert flags.parse(BASE + opts.argv()).sockopts == opts
    with pytest.raises(OptionError, match="unknown socket option 'hb'"):
        SockOpts.from_label("hb")


# ---- unsupported: decided from the versions, before any socket -------------------------------------

ZMQ_NAMES = {"HEARTBEAT_IVL", "HEARTBEAT_TIMEOUT", "HEARTBEAT_TTL", "IMMEDIATE", "RECONNECT_IVL", "SNDHWM",
             "RCVHWM", "XPUB_NODROP"}


def test_heartbeat_on_a_libzmq_older_than_4_2_is_unsupported_with_the_reason():
    hb = SockOpts(heartbeat=(100,))
    reason = hb.unsupported((4, 1, 6), ZMQ_NAMES)      # pyzmq 19 defines the constants; libzmq 4.1.6 lacks them
    assert reason == ("ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL are new in libzmq 4.2.0 (zmq_setsockopt(3)); "
                      "this is libzmq 4.1.6")
    assert hb.unsupported((4, 2, 0), ZMQ_NAMES) is None and hb.unsupported((4, 3, 5), ZMQ_NAMES) is None
    assert "no HEARTBEAT_IVL/HEARTBEAT_TIMEOUT constant" in SockOpts(heartbeat=(1, 2)).unsupported(
        (4, 3, 4), ZMQ_NAMES - {"HEARTBEAT_IVL", "HEARTBEAT_TIMEOUT"})
    assert SockOpts(immediate=True, hwm=5).unsupported((4, 1, 6), ZMQ_NAMES) is None
    assert "ZMQ_XPUB_NODROP is new in libzmq 4.1.0" in SockOpts(xpub_nodrop=True).unsupported((4, 0, 5), ZMQ_NAMES)
    assert SockOpts().unsupported((3, 2, 0), set()) is None


# ---- real runs in the pinned wheel's venv (pyzmq 25.1.2, libzmq 4.3.4) ------------------------------

FACTORY = r"""
import json, sys, zmq
from scenarios import flags, harness, pushpull
args = flags.parse(sys.argv[1:])
run = harness.Run(args, pushpull)
ctl = harness.Ctl(run, run.senders[0])
sender = ctl.socket(run.ctx, zmq.PUSH)                 # what every pattern's sender code calls
xpub = ctl.socket(run.ctx, zmq.XPUB)
receiver = run.ctx.socket(zmq.PULL)
run.configure(receiver, "receiver")                    # what the main loop does to the bound socket
data = run.socket(zmq.SUB, side=None)                  # the originals' data socket: no options
names = ("LINGER", "HEARTBEAT_IVL", "HEARTBEAT_TIMEOUT", "HEARTBEAT_TTL", "IMMEDIATE", "RECONNECT_IVL",
         "SNDHWM", "RCVHWM")
read = lambda s: {n: s.getsockopt(getattr(zmq, n)) for n in names}
print(json.dumps({"sender": read(sender), "receiver": read(receiver), "data": read(data),
                  "xpub": read(xpub)}))
for s in (sender, xpub, receiver, data):
    s.close(0)
run.monitor.stop() if hasattr(run.monitor, "stop") else None
sys.stdout.flush()
import os; os._exit(0)
"""


def venv_python(local):
    backend, target = local
    return str(backend.python(target))


def scenario_env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def test_the_socket_factory_really_sets_each_option(local):
    argv = BASE + ["--linger", "7", "--heartbeat", "100:300:1000", "--immediate", "--reconnect-ivl", "50",
                   "--hwm", "10"]
    done = subprocess.run([venv_python(local), "-c", FACTORY, *argv], capture_output=True, text=True,
                          env=scenario_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["sender"] == {"LINGER": 7, "HEARTBEAT_IVL": 100, "HEARTBEAT_TIMEOUT": 300, "HEARTBEAT_TTL": 1000,
                             "IMMEDIATE": 1, "RECONNECT_IVL": 50, "SNDHWM": 10, "RCVHWM": 10}
    # the receiver binds: heartbeats and marks, but libzmq's defaults for connecting-only options
    assert got["receiver"] == dict(got["sender"], IMMEDIATE=0, RECONNECT_IVL=100)
    assert got["data"] == {"LINGER": 7, "HEARTBEAT_IVL": 0, "HEARTBEAT_TIMEOUT": -1, "HEARTBEAT_TTL": 0,
                           "IMMEDIATE": 0, "RECONNECT_IVL": 100, "SNDHWM": 1000, "RCVHWM": 1000}
    # and without the flags, nothing but the linger (libzmq's defaults)
    plain = subprocess.run([venv_python(local), "-c", FACTORY, *BASE, "--linger", "7"], capture_output=True,
                           text=True, env=scenario_env(), timeout=60)
    assert json.loads(plain.stdout)["sender"] == got["data"]


NODROP = r"""
import json, sys, zmq
from scenarios import flags, harness, pubsub
args = flags.parse(sys.argv[1:])
run = harness.Run(args, pubsub)
xpub = harness.Ctl(run, run.senders[0]).socket(run.ctx, zmq.XPUB)     # the sender's XPUB, as pubsub makes it
sub = run.ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 1)
xpub.bind("inproc://nodrop")
sub.connect("inproc://nodrop")
sub.setsockopt(zmq.SUBSCRIBE, b"")
xpub.recv()                                          # the subscription: the pipe is up
refused = 0
for i in range(50):                                  # nobody reads the SUB: the marks fill at once
    try:
        xpub.send(b"x", zmq.NOBLOCK)
    except zmq.Again:
        refused += 1
print(json.dumps({"refused": refused}))
sys.stdout.flush()
import os; os._exit(0)
"""


def test_xpub_nodrop_is_set_on_the_senders_xpub(local):
    """XPUB_NODROP cannot be read back (libzmq has no getsockopt for it): its effect is the
    evidence. A non-blocking send at the mark is refused with EAGAIN instead of vanishing."""
    argv = ["--pattern", "pubsub", "--sync", "xpub", "--transport", "tcp", "--hwm", "2"]
    refused = {}
    for extra in ([], ["--xpub-nodrop"]):
        done = subprocess.run([venv_python(local), "-c", NODROP, *argv, *extra], capture_output=True, text=True,
                              env=scenario_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        refused[bool(extra)] = json.loads(done.stdout)["refused"]
    assert refused[False] == 0                   # the default XPUB drops at the mark, silently
    assert refused[True] > 40                    # with nodrop the same sends are refused


def run(local, pattern, transport, sockopts=SockOpts(), repeat=1, extra=(), **kw):
    backend, target = local
    cell = Cell(target.name, pattern, transport, threads=kw.pop("threads", 10), msgs=kw.pop("msgs", 200),
                sockopts=sockopts, **kw)
    return run_cell(backend, target, cell, RunSettings(repeat=repeat, stall=2.0, extra=tuple(extra)))


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
def test_reqrep_delivers_everything_in_threads(local, transport):
    verdict = run(local, "reqrep", transport, repeat=2)
    assert verdict.worst == "ok", verdict.summary_line()
    for r in verdict.runs:
        assert r.report["totals"]["received"] == r.report["totals"]["expected"] == 2000
        assert r.report["shutdown_received"] is True
        schemas.validate("run", r.report)


def test_reqrep_delivers_everything_in_two_processes(local):
    verdict = run(local, "reqrep", "tcp", topology="processes")
    assert verdict.worst == "ok", verdict.summary_line()
    assert verdict.runs[0].report["totals"]["received"] == 2000


def test_reqrep_without_a_reply_is_a_deadlock_in_wait_reply(local, tmp_path):
    """The REQ's lockstep (libzmq#1227): a request whose reply never comes hangs its sender in
    the reply's receive. The REP answering nothing stands in for a REP that died."""
    silent = tmp_path / "scenarios"
    silent.mkdir()
    for name in os.listdir(REPO / "scenarios"):
        if name.endswith(".py"):
            (silent / name).write_text((REPO / "scenarios" / name).read_text())
    (silent / "reqrep.py").write_text((REPO / "scenarios/reqrep.py").read_text().replace('sock.send(b"")', "pass"))
    done = subprocess.run([venv_python(local), "-m", "scenarios", "--pattern", "reqrep", "--transport", "tcp",
                           "--threads", "2", "--msgs", "5", "--stall", "1", "--sleep", "0", "--quiet"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                          cwd=tmp_path, timeout=60)           # `-m` puts the working directory first
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outcome"] == "deadlock", report["reason"]
    assert {t["state"] for t in report["threads"]} == {"wait-reply"}
    # the REP took one request and, never answering, no other (a REP owes its reply before it
    # receives again); both requests wait for a reply
    assert report["totals"]["received"] == 1


def test_options_in_a_real_run_are_stated_and_change_nothing_when_nothing_fails(local):
    opts = SockOpts(heartbeat=(100, 300, 1000), immediate=True, reconnect_ivl=50, hwm=10)
    verdict = run(local, "pushpull", "tcp", opts, threads=4, msgs=300)
    assert verdict.worst == "ok", verdict.summary_line()
    assert verdict.cell.key.endswith("/pushpull/tcp/default+hb100-300-1000+immediate+rivl50+hwm10")
    report = verdict.runs[0].report
    assert report["params"]["sockopts"] == opts.to_dict()
    schemas.validate("verdict", verdict.to_dict())


def test_nodrop_with_nowait_counts_sends_at_the_mark_as_refused_not_lost(local):
    verdict = run(local, "pubsub", "tcp", SockOpts(hwm=1, xpub_nodrop=True), sync="xpub", threads=4, msgs=2000,
                  extra=["--nowait"])
    report = verdict.runs[0].report
    assert verdict.worst == "ok", verdict.summary_line()
    refused = sum(t["would_block"] for t in report["threads"])
    assert refused > 0 and report["totals"]["received"] == 8000 - refused
    assert "refused with EAGAIN at the sender (--nowait), not counted as lost" in report["reason"]


def test_heartbeat_on_an_old_libzmq_ends_the_run_unsupported(local):
    """The harness's own wiring of the decision: this libzmq made to report 4.1.6."""
    code = ("import sys, zmq; zmq.zmq_version_info = lambda: (4, 1, 6); "
            "from scenarios.harness import main; main(sys.argv[1:])")
    done = subprocess.run([venv_python(local), "-c", code, *BASE, "--heartbeat", "100", "--quiet"],
                          capture_output=True, text=True, env=scenario_env(), timeout=60)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outcome"] == "unsupported"
    assert "ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL are new in libzmq 4.2.0" in report["reason"]
    assert "4.1.6" in report["reason"]
