"""Socket options as run flags (scenarios/options.py, flags.py, the harness's socket factory) and
the REQ/REP pattern: flag parsing and its cross-checks (pure), the options really set on the
sockets a run makes (getsockopt in the pinned pyzmq-25.1.2 wheel's venv), heartbeats on a
libzmq older than 4.2 reported `unsupported`, and reqrep delivering everything."""
import json
import os
import shutil
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
    # 0 asks 4.1.6 for the OS default and 4.2+ for the kernel's minimum: refused, not guessed
    (["--sndbuf", "0"], "--sndbuf must be 1..2147483647 bytes"),
    (["--rcvbuf", "-5"], "--rcvbuf must be 1..2147483647 bytes"),
    (["--rcvbuf", "2147483648"], "--rcvbuf must be 1..2147483647 bytes"),
    (["--sndbuf", "4k"], "invalid int value: '4k'"),          # the flag is bytes; 'k' is a label's
    (["--sndbuf", "4096", "--transport", "ipc"], "--sndbuf: kernel socket buffers libzmq sets on tcp sockets only, not ipc"),
    (["--sndbuf", "1", "--rcvbuf", "1", "--transport", "inproc"], "--sndbuf/--rcvbuf: kernel socket buffers"),
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
    # the kernel buffers go on both sides, like the marks: the sender's send buffer and the
    # receiver's receive buffer are where a paused peer's backlog waits
    bufs = SockOpts(hwm=10, sndbuf=4096, rcvbuf=8192, xpub_nodrop=True)
    assert bufs.settings("XPUB", "sender") == [("SNDHWM", 10), ("RCVHWM", 10), ("SNDBUF", 4096), ("RCVBUF", 8192),
                                               ("XPUB_NODROP", 1)]
    assert bufs.settings("SUB", "receiver") == [("SNDHWM", 10), ("RCVHWM", 10), ("SNDBUF", 4096), ("RCVBUF", 8192)]


def test_labels_round_trip_through_the_flags():
    for label in ("+hb100", "+hb100-300-1000+immediate", "+rivl-1+hwm0", "+hb5+immediate+rivl50+hwm10"):
        opts = SockOpts.from_label(label)
        assert opts.label == label
        assert flags.parse(BASE + opts.argv()).sockopts == opts
    with pytest.raises(OptionError, match="unknown socket option 'hb'"):
        SockOpts.from_label("hb")


def test_buffer_sizes_in_labels_keys_and_flags():
    both = SockOpts.from_label("hwm10+buf4k+nodrop")
    assert (both.sndbuf, both.rcvbuf, both.hwm, both.xpub_nodrop) == (4096, 4096, 10, True)
    assert both.label == "+hwm10+buf4k+nodrop"
    assert both.argv() == ["--hwm", "10", "--sndbuf", "4096", "--rcvbuf", "4096", "--xpub-nodrop"]
    assert both.to_dict() == {"hwm": 10, "sndbuf": 4096, "rcvbuf": 4096, "xpub_nodrop": True}
    assert SockOpts.from_dict(both.to_dict()) == both
    # one label per set of options: equal sizes say 'buf', in whole KiB where they are one
    assert SockOpts.from_label("sndbuf4096+rcvbuf4k").label == "+buf4k"
    assert SockOpts.from_label("rcvbuf8k+sndbuf1500").label == "+sndbuf1500+rcvbuf8k"
    assert SockOpts.from_label("buf4097").label == "+buf4097"
    assert SockOpts.from_label("rcvbuf2k") == SockOpts(rcvbuf=2048)
    for label in ("+buf4k", "+sndbuf1500", "+rcvbuf8k", "+hwm10+sndbuf2k+rcvbuf4k+nodrop"):
        opts = SockOpts.from_label(label)
        assert opts.label == label
        argv = ["--pattern", "pubsub", "--sync", "xpub", "--transport", "tcp", *opts.argv()]
        assert flags.parse(argv).sockopts == opts
    with pytest.raises(OptionError, match="socket option sndbuf given twice in 'buf4k\\+sndbuf1k'"):
        SockOpts.from_label("buf4k+sndbuf1k")
    with pytest.raises(OptionError, match="unknown socket option 'bufk'.*bufN\\[k\\]"):
        SockOpts.from_label("bufk")
    with pytest.raises(OptionError, match="--sndbuf must be 1..2147483647 bytes"):
        SockOpts.from_label("buf0")
    with pytest.raises(OptionError, match="--sndbuf must be 1..2147483647 bytes"):
        SockOpts.from_label("buf2097152k")          # 2 GiB: past INT_MAX


def test_buffer_cells_run_over_tcp_only_and_their_keys_round_trip():
    from lab.cells import expand
    from lab.errors import LabError
    from lab.requests import parse_faults
    cells = expand(["t"], "pubsub", "inproc,ipc,tcp", poll_modes="off", sync_modes="xpub", topologies="threads,containers",
                   sockopts="hwm10+buf4k,hwm10+buf4k+nodrop", faults=parse_faults("none,pause:rx@1+2"))
    # the buffers are tcp's: no inproc/ipc cell; a fault only where it can be applied (containers)
    assert [c.key for c in cells] == [
        "t/pubsub/tcp/default+xpub+hwm10+buf4k", "t/pubsub/tcp/default+xpub+hwm10+buf4k@containers",
        "t/pubsub/tcp/default+xpub+hwm10+buf4k~pause-rx-1-2@containers",
        "t/pubsub/tcp/default+xpub+hwm10+buf4k+nodrop", "t/pubsub/tcp/default+xpub+hwm10+buf4k+nodrop@containers",
        "t/pubsub/tcp/default+xpub+hwm10+buf4k+nodrop~pause-rx-1-2@containers"]
    for cell in cells:
        assert Cell.from_dict(cell.to_dict()) == cell
    fault = cells[-1]
    assert fault.to_dict()["sockopts"] == {"hwm": 10, "sndbuf": 4096, "rcvbuf": 4096, "xpub_nodrop": True}
    argv = fault.scenario_argv(6.0, 0.0)
    assert argv[argv.index("--sndbuf") + 1] == argv[argv.index("--rcvbuf") + 1] == "4096"
    with pytest.raises(LabError, match="socket options buf4k apply to none of the chosen cells: --sndbuf/--rcvbuf: "
                                       "kernel socket buffers libzmq sets on tcp sockets only, not ipc"):
        expand(["t"], "pushpull", "ipc", sockopts="buf4k")


# ---- unsupported: decided from the versions, before any socket -------------------------------------

ZMQ_NAMES = {"HEARTBEAT_IVL", "HEARTBEAT_TIMEOUT", "HEARTBEAT_TTL", "IMMEDIATE", "RECONNECT_IVL", "SNDHWM",
             "RCVHWM", "XPUB_NODROP", "SNDBUF", "RCVBUF"}


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
    # every pin's libzmq (4.1.6 on) has ZMQ_SNDBUF/RCVBUF; a pyzmq without the constant says so
    assert SockOpts(sndbuf=4096, rcvbuf=4096).unsupported((4, 1, 6), ZMQ_NAMES) is None
    assert "no RCVBUF constant" in SockOpts(rcvbuf=4096).unsupported((4, 3, 4), ZMQ_NAMES - {"RCVBUF"})


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


KERNEL_BUFFERS = r"""
import json, re, subprocess, sys, zmq
from scenarios import flags, harness, pushpull
args = flags.parse(sys.argv[1:])
run = harness.Run(args, pushpull)
receiver = run.ctx.socket(zmq.PULL)
run.configure(receiver, "receiver")                    # the main loop's bound socket
receiver.bind("tcp://127.0.0.1:*")
port = int(receiver.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
sender = harness.Ctl(run, run.senders[0]).socket(run.ctx, zmq.PUSH)   # a control thread's
sender.connect("tcp://127.0.0.1:%d" % port)
sender.send(b"x")
receiver.recv()                                        # the connection is up and accepted
ss = subprocess.run(["ss", "-tnmH", "state", "all", "( sport = :%d or dport = :%d )" % (port, port)],
                    capture_output=True, text=True, check=True).stdout
got = {}
for m in re.finditer(r"\S+:(\d+)\s+\S+:(\S+)\s+skmem:\(r\d+,rb(\d+),t\d+,tb(\d+)", ss):
    local, peer = int(m.group(1)), m.group(2)
    role = "listener" if peer == "*" else "accepted" if local == port else "connected"
    got[role] = {"rcvbuf": int(m.group(3)), "sndbuf": int(m.group(4))}
got["zmq"] = {"SNDBUF": sender.getsockopt(zmq.SNDBUF), "RCVBUF": receiver.getsockopt(zmq.RCVBUF)}
print(json.dumps(got))
sys.stdout.flush()
import os; os._exit(0)
"""


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss to read the kernel's buffers")
def test_kernel_buffers_are_set_on_both_ends_and_the_accepted_connection_inherits_the_listeners(local):
    """What libzmq does with ZMQ_SNDBUF/RCVBUF, seen from the kernel (ss's skmem rb/tb): set on
    the socket it opens to connect and on the listener, never on an accepted socket, which
    takes the listener's (Linux copies them on accept). Linux doubles what it is asked for."""
    def buffers(*extra):
        done = subprocess.run([venv_python(local), "-c", KERNEL_BUFFERS, *BASE, *extra], capture_output=True,
                              text=True, env=scenario_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    got = buffers("--sndbuf", "4096", "--rcvbuf", "6144")
    assert set(got) == {"listener", "accepted", "connected", "zmq"}, got
    for role in ("listener", "accepted", "connected"):
        assert got[role] == {"sndbuf": 8192, "rcvbuf": 12288}, (role, got)
    assert got["zmq"] == {"SNDBUF": 4096, "RCVBUF": 6144}
    # without the flags: the kernel's own sizes (autotuned, far larger) and libzmq's -1 default
    plain = buffers()
    assert plain["zmq"] == {"SNDBUF": -1, "RCVBUF": -1}
    assert plain["accepted"]["rcvbuf"] > 12288 and plain["connected"]["sndbuf"] > 8192, plain


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


# The verdict schema (lab/schemas/verdict.schema.json) lists a cell's socket options one by one
# and refuses others: an option it does not know makes every run of such a cell fail when its
# verdict is saved (sndbuf/rcvbuf did, until the schema learned them).
def test_a_verdict_of_a_cell_with_every_socket_option_is_valid():
    from lab import schemas
    from tests.factories import make_verdict
    opts = SockOpts(heartbeat=(100, 300, 1000), immediate=True, reconnect_ivl=50, hwm=10, xpub_nodrop=True,
                    sndbuf=4096, rcvbuf=8192)
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", sync="xpub", threads=4, msgs=50, sockopts=opts)
    schemas.validate("verdict", make_verdict(["ok"], cell).to_dict())
