"""The other thread-safe draft socket pairs (scattergather, radiodish, peer, channel).

Pure tests load each pattern module against a stand-in `zmq` (no pyzmq on the host) and check
its socket code, its `unsupported` reasons and its sends; the Docker tests run every pattern
x variant x transport for real in the draft images and check the verdicts and reasons."""
from __future__ import annotations

import ast
import ctypes
import importlib.util
import sys
import time
import types
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from scenarios import flags

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
NEW = ("scattergather", "radiodish", "peer", "channel")
# pattern -> (receiver type, sender type, the libzmq release whose NEWS introduced the pair)
SOCKETS = {"scattergather": ("GATHER", "SCATTER", "4.2.0"), "radiodish": ("DISH", "RADIO", "4.2.0"),
           "peer": ("PEER", "PEER", "4.3.3"), "channel": ("CHANNEL", "CHANNEL", "4.3.3")}
TYPES = {"PAIR": 0, "PUB": 1, "SUB": 2, "REQ": 3, "REP": 4, "DEALER": 5, "ROUTER": 6, "PULL": 7,
         "PUSH": 8, "XPUB": 9, "XSUB": 10, "STREAM": 11, "SERVER": 12, "CLIENT": 13, "RADIO": 14,
         "DISH": 15, "GATHER": 16, "SCATTER": 17, "DGRAM": 18, "PEER": 19, "CHANNEL": 20}


# --- a stand-in pyzmq ----------------------------------------------------------------------

class FakeZMQError(Exception):
    def __init__(self, errno=22, msg=None):
        super().__init__(msg or "errno %d" % errno)
        self.errno = errno


class FakeAgain(FakeZMQError):
    pass


class FakeSocket:
    def __init__(self, zmq, kind):
        self.zmq, self.kind = zmq, kind
        self.calls, self.closed, self.joined = [], False, []
        self.underlying = 0x1234

    def setsockopt(self, opt, value):
        self.calls.append(("setsockopt", opt, value))

    def connect(self, endpoint):
        self.calls.append(("connect", endpoint))

    def poll(self, timeout, flags):
        self.calls.append(("poll", timeout, flags))
        return 0

    def join(self, group):
        if self.zmq.join_error:
            raise self.zmq.join_error
        self.joined.append(group)

    def send(self, data, flags=0, copy=True, track=False, routing_id=None, group=None):
        self.calls.append(("send", data, flags, routing_id, group))
        if self.zmq.send_error:
            raise self.zmq.send_error

    def close(self, linger=None):
        self.closed = True


class FakeContext:
    def __init__(self, zmq):
        self.zmq, self.terminated, self.made = zmq, False, []

    def socket(self, kind):
        if kind in self.zmq.uncreatable:
            raise FakeZMQError(22, "Invalid argument")
        sock = FakeSocket(self.zmq, kind)
        self.made.append(sock)
        self.zmq.sockets.append(sock)
        return sock

    def term(self):
        self.terminated = True


def fake_zmq(draft=True, pyzmq="25.1.2", libzmq="4.3.4", missing=(), uncreatable=(), join_error=None,
             frame_error=None):
    zmq = types.ModuleType("zmq")
    zmq.ZMQError, zmq.Again = FakeZMQError, FakeAgain
    zmq.NOBLOCK, zmq.POLLIN, zmq.POLLOUT, zmq.LINGER, zmq.LAST_ENDPOINT = 1, 1, 2, 17, 32
    for name, value in TYPES.items():
        if name not in missing:
            setattr(zmq, name, value)
    zmq.uncreatable = {TYPES[n] for n in uncreatable}
    zmq.join_error, zmq.send_error, zmq.sockets, zmq.contexts = join_error, None, [], []
    zmq.has = lambda capability: draft if capability == "draft" else True
    zmq.zmq_version = lambda: libzmq
    zmq.pyzmq_version = lambda: pyzmq

    def context():
        ctx = FakeContext(zmq)
        zmq.contexts.append(ctx)
        return ctx
    zmq.Context = context

    class Frame:
        def __init__(self, data):
            self.data = data

        def __setattr__(self, name, value):
            if name in ("group", "routing_id") and frame_error:
                raise frame_error
            object.__setattr__(self, name, value)
    zmq.Frame = Frame
    return zmq


def load(name, zmq, monkeypatch):
    """scenarios/<name>.py executed against `zmq`, under a private name (sys.modules keeps the
    real scenario modules untouched for the other tests)."""
    monkeypatch.setitem(sys.modules, "zmq", zmq)
    # the shared thread-safe socket code must be executed against this `zmq` too
    import scenarios
    monkeypatch.delitem(sys.modules, "scenarios.threadsafe", raising=False)
    monkeypatch.delattr(scenarios, "threadsafe", raising=False)
    spec = importlib.util.spec_from_file_location("zmqlab_test_%s_%s" % (name, uuid.uuid4().hex[:6]),
                                                  SCENARIOS / ("%s.py" % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_ctl(harness, ctx=None, pattern=None, poll=False, nowait=False, linger=30000):
    """The harness's own Ctl (what a pattern's code calls) on a minimal run."""
    args = SimpleNamespace(sync="none", variant="default", poll=poll, nowait=nowait, linger=linger)
    monitor = SimpleNamespace(watch=lambda sock, thread, side=None: None, settle=lambda thread: None)
    run = SimpleNamespace(args=args, last_progress=0.0, pattern=pattern, monitor=monitor)
    run.progress = lambda: setattr(run, "last_progress", time.monotonic())
    run.socket = lambda kind: ctx.socket(kind)
    record = SimpleNamespace(id=0, attempted=0, completed=0, refused=set(), state="open", connect_ns=None)
    return harness.Ctl(run, record)


# --- the modules as files ------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_module_is_python39_pyzmq_and_stdlib_only_with_the_pattern_interface(name, monkeypatch):
    source = (SCENARIOS / ("%s.py" % name)).read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "zmq" in imported or name in ("scattergather", "channel")
    assert imported - {"zmq"} <= set(sys.stdlib_module_names) | {"scenarios"}, imported
    assert "threadsafe.socket_code(" in source          # the shared socket code, not a copy of it
    module = load(name, fake_zmq(), monkeypatch)
    for fn in ("unsupported", "open_receiver", "open_shared", "open_sender"):
        assert callable(getattr(module, fn))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert ("send" in functions) == (name in ("radiodish", "peer"))   # group / routing id per send
    doc = ast.get_docstring(tree)
    assert "WallStProg/zmqtests" in doc and "clientserver.cpp" in doc
    assert SOCKETS[name][2] in doc                    # the libzmq release that introduced it


@pytest.mark.parametrize("name", NEW)
def test_catalog_lists_the_pattern_with_its_two_variants(name):
    assert name in flags.PATTERNS
    assert flags.variants(name) == ("shared", "per-thread")
    assert flags.parse(["--pattern", name]).variant == "shared"


# --- unsupported: the reasons name what is missing and the versions ----------------------

@pytest.mark.parametrize("name", NEW)
def test_without_draft_libzmq_the_pattern_is_unsupported_naming_the_libzmq(name, monkeypatch):
    zmq = fake_zmq(draft=False, libzmq="4.3.4")
    reason = load(name, zmq, monkeypatch).unsupported("shared")
    assert "draft" in reason and "libzmq 4.3.4" in reason and SOCKETS[name][1] in reason
    assert zmq.sockets == []                          # decided before any socket is made


@pytest.mark.parametrize("name", NEW)
def test_without_the_constant_the_pattern_is_unsupported_naming_the_pyzmq(name, monkeypatch):
    missing = {SOCKETS[name][0], SOCKETS[name][1]}
    reason = load(name, fake_zmq(pyzmq="17.1.2", libzmq="4.2.5", missing=missing), monkeypatch).unsupported("per-thread")
    assert "pyzmq 17.1.2" in reason and SOCKETS[name][1] in reason


@pytest.mark.parametrize("name", NEW)
def test_a_socket_libzmq_cannot_create_is_unsupported_with_the_error(name, monkeypatch):
    kind = SOCKETS[name][1]
    zmq = fake_zmq(libzmq="4.3.2", pyzmq="19.0.2", uncreatable=(kind,))
    reason = load(name, zmq, monkeypatch).unsupported("shared")
    assert "libzmq 4.3.2" in reason and "pyzmq 19.0.2" in reason and kind in reason
    assert SOCKETS[name][2] in reason and "Invalid argument" in reason
    assert all(ctx.terminated for ctx in zmq.contexts) and all(s.closed for s in zmq.sockets)


@pytest.mark.parametrize("name", ("scattergather", "channel", "radiodish"))
def test_a_working_draft_build_is_supported_and_the_probe_cleans_up(name, monkeypatch):
    zmq = fake_zmq()
    assert load(name, zmq, monkeypatch).unsupported("shared") is None
    assert zmq.sockets and all(s.closed for s in zmq.sockets) and all(c.terminated for c in zmq.contexts)


def test_radiodish_without_pyzmq_draft_calls_is_unsupported(monkeypatch):
    broken = RuntimeError("libzmq and pyzmq must be built with draft support for RADIO-DISH")
    reason = load("radiodish", fake_zmq(join_error=broken), monkeypatch).unsupported("shared")
    assert "join" in reason and "draft support" in reason
    reason = load("radiodish", fake_zmq(frame_error=FakeZMQError(95, "Operation not supported")),
                  monkeypatch).unsupported("shared")
    assert "group" in reason and "Operation not supported" in reason


def test_peer_without_pyzmq_routing_ids_is_unsupported(monkeypatch):
    reason = load("peer", fake_zmq(frame_error=RuntimeError("draft support needed")), monkeypatch).unsupported("shared")
    assert "routing id" in reason and "draft support needed" in reason


def test_peer_is_unsupported_when_no_loaded_library_has_zmq_connect_peer(monkeypatch):
    # This test process has loaded no libzmq at all: the lookup finds none and says so.
    peer = load("peer", fake_zmq(), monkeypatch)
    reason = peer.unsupported("shared")
    assert reason and "zmq_connect_peer" in reason and "libzmq 4.3.4 (pyzmq 25.1.2)" in reason
    fn, again = peer._connect_peer_fn()
    assert fn is None and again == reason             # looked up once


def test_peer_lookup_failure_is_a_reason_not_a_crash(monkeypatch):
    peer = load("peer", fake_zmq(), monkeypatch)

    def boom():
        raise ValueError("unreadable maps")
    monkeypatch.setattr(peer, "_mapped_libraries", boom)
    assert "unreadable maps" in peer.unsupported("per-thread")


class FakeFunction:
    def __init__(self, result=None):
        self.result, self.restype, self.argtypes = result, None, None

    def __call__(self, *args):
        return self.result


class FakeLibrary:
    """What ctypes.CDLL(path, RTLD_NOLOAD) returns; `symbols` as dlsym on its handle sees them
    (its own and its dependencies'): name -> (function, code address)."""
    def __init__(self, symbols, version=(4, 3, 4)):
        self.symbols, self.version = symbols, version

    def zmq_version(self, major, minor, patch):
        for ref, value in zip((major, minor, patch), self.version):
            ref._obj.value = value


def fake_process(peer, monkeypatch, regions, libraries):
    """The process's mapped files (start, end, path) and what opening each gives."""
    monkeypatch.setattr(peer, "_mapped_libraries", lambda: regions)
    monkeypatch.setattr(peer, "_symbol", lambda lib, name: lib.symbols.get(name, (None, None)))

    def cdll(path, mode=0, use_errno=False):
        assert mode & peer.os.RTLD_NOLOAD and use_errno      # never loads a second copy
        if path not in libraries:
            raise OSError("not loaded")
        return libraries[path]
    monkeypatch.setattr(peer.ctypes, "CDLL", cdll)


EXT, LIBZMQ, OTHER = "/venv/zmq/backend/socket.so", "/venv/zmq/libzmq.so.5", "/usr/lib/libzmq.so.5"
REGIONS = [(0x1000, 0x2000, EXT), (0x5000, 0x9000, LIBZMQ), (0xa000, 0xf000, OTHER)]


def test_peer_finds_zmq_connect_peer_in_the_one_libzmq_the_extensions_resolve_to(monkeypatch):
    peer = load("peer", fake_zmq(), monkeypatch)
    connect = FakeFunction(5)
    symbols = {"zmq_socket": (FakeFunction(), 0x5100), "zmq_connect_peer": (connect, 0x5200)}
    fake_process(peer, monkeypatch, REGIONS[:2], {EXT: FakeLibrary(symbols), LIBZMQ: FakeLibrary(symbols)})
    fn, reason = peer._find_connect_peer()
    assert (fn, reason) == (connect, None)
    assert fn.restype is ctypes.c_uint32 and fn.argtypes == [ctypes.c_void_p, ctypes.c_char_p]


def test_peer_refuses_two_loaded_copies_of_libzmq(monkeypatch):
    peer = load("peer", fake_zmq(), monkeypatch)
    mine = {"zmq_socket": (FakeFunction(), 0x5100), "zmq_connect_peer": (FakeFunction(5), 0x5200)}
    other = {"zmq_socket": (FakeFunction(), 0xa100), "zmq_connect_peer": (FakeFunction(5), 0xa200)}
    fake_process(peer, monkeypatch, REGIONS, {EXT: FakeLibrary(mine), LIBZMQ: FakeLibrary(mine),
                                              OTHER: FakeLibrary(other)})
    fn, reason = peer._find_connect_peer()
    assert fn is None and "2 copies of libzmq" in reason and LIBZMQ in reason and OTHER in reason


def test_peer_without_the_export_or_with_another_version_names_the_library(monkeypatch):
    peer = load("peer", fake_zmq(), monkeypatch)
    fake_process(peer, monkeypatch, REGIONS[:2], {LIBZMQ: FakeLibrary({"zmq_socket": (FakeFunction(), 0x5100)})})
    fn, reason = peer._find_connect_peer()
    assert fn is None and LIBZMQ in reason and "does not export zmq_connect_peer" in reason
    symbols = {"zmq_socket": (FakeFunction(), 0x5100), "zmq_connect_peer": (FakeFunction(5), 0x5200)}
    fake_process(peer, monkeypatch, REGIONS[:2], {LIBZMQ: FakeLibrary(symbols, version=(4, 3, 3))})
    fn, reason = peer._find_connect_peer()
    assert fn is None and "reports libzmq 4.3.3" in reason


# --- the socket code: who makes, connects and shares what ----------------------------------

@pytest.fixture
def harness(monkeypatch):
    return load("harness", fake_zmq(), monkeypatch)


@pytest.mark.parametrize("name", NEW)
def test_shared_is_one_sender_made_and_connected_by_the_main_program(name, harness, monkeypatch):
    module = load(name, sys.modules["zmq"], monkeypatch)
    zmq = sys.modules["zmq"]
    if name == "peer":
        monkeypatch.setattr(module, "connect_peer", lambda sock, endpoint: 7)
    ctx = zmq.Context()
    ctl = make_ctl(harness, ctx, module, poll=True)
    shared = module.open_shared(ctl, ctx, "tcp://127.0.0.1:5555", "shared")
    sock = shared.sock if name == "peer" else shared
    assert sock.kind == TYPES[SOCKETS[name][1]]
    assert [c[0] for c in sock.calls if c[0] != "setsockopt"] == (["poll"] if name == "peer" else ["connect", "poll"])
    assert ctl.owned == [sock]
    for _ in range(3):                                # every thread gets the same socket, no new one
        assert module.open_sender(make_ctl(harness, ctx, module), ctx, "tcp://127.0.0.1:5555", shared) is shared
    assert len(ctx.made) == 1
    if name == "peer":
        assert shared.routing_id == 7


@pytest.mark.parametrize("name", NEW)
def test_per_thread_is_one_connected_sender_per_thread(name, harness, monkeypatch):
    module = load(name, sys.modules["zmq"], monkeypatch)
    zmq = sys.modules["zmq"]
    ids = iter(range(1, 100))
    if name == "peer":
        monkeypatch.setattr(module, "connect_peer", lambda sock, endpoint: next(ids))
    ctx = zmq.Context()
    assert module.open_shared(make_ctl(harness, ctx, module), ctx, "ipc:///tmp/x", "per-thread") is None
    senders = [module.open_sender(make_ctl(harness, ctx, module), ctx, "ipc:///tmp/x", None) for _ in range(3)]
    socks = [s.sock if name == "peer" else s for s in senders]
    assert len({id(s) for s in socks}) == 3 and all(s.kind == TYPES[SOCKETS[name][1]] for s in socks)
    if name == "peer":
        assert [s.routing_id for s in senders] == [1, 2, 3]
    else:
        assert all(("connect", "ipc:///tmp/x") in s.calls for s in socks)


@pytest.mark.parametrize("name", NEW)
def test_receiver_is_the_bound_half(name, monkeypatch):
    zmq = fake_zmq()
    module = load(name, zmq, monkeypatch)
    sock = module.open_receiver(zmq.Context())
    assert sock.kind == TYPES[SOCKETS[name][0]]
    assert sock.joined == ([b"zmqlab"] if name == "radiodish" else [])
    assert not any(c[0] == "connect" for c in sock.calls)


def test_radiodish_sends_every_payload_to_the_dishs_group(harness, monkeypatch):
    zmq = sys.modules["zmq"]
    radiodish = load("radiodish", zmq, monkeypatch)
    ctl, sock = make_ctl(harness, pattern=radiodish, nowait=True), FakeSocket(zmq, zmq.RADIO)
    radiodish.send(ctl, sock, "inproc://x", b"P-one")
    assert sock.calls == [("send", b"P-one", zmq.NOBLOCK, None, radiodish.GROUP)]
    assert ctl.record.state == "running" and ctl.run.last_progress > 0
    dish = radiodish.open_receiver(zmq.Context())
    assert dish.joined == [radiodish.GROUP]


@pytest.mark.parametrize("name", ("radiodish", "peer"))
def test_a_refused_nowait_send_is_counted_as_refused_not_raised(name, harness, monkeypatch):
    zmq = sys.modules["zmq"]
    module = load(name, zmq, monkeypatch)
    ctl = make_ctl(harness, pattern=module, nowait=True)
    ctl.record.attempted = 41
    sock = FakeSocket(zmq, 0)
    target = module.Peer(sock) if name == "peer" else sock
    zmq.send_error = FakeAgain(11)
    module.send(ctl, target, "inproc://x", b"P")
    assert ctl.record.refused == {41} and ctl.record.state == "running"
    zmq.send_error = FakeZMQError(113, "Host unreachable")     # anything else is the run's error
    with pytest.raises(FakeZMQError):
        module.send(ctl, target, "inproc://x", b"P")


def test_peer_sends_with_the_routing_id_of_its_connection(harness, monkeypatch):
    zmq = sys.modules["zmq"]
    peer = load("peer", zmq, monkeypatch)
    monkeypatch.setattr(peer, "connect_peer", lambda sock, endpoint: 0x8000001)
    ctx = zmq.Context()
    ctl = make_ctl(harness, ctx, peer)
    sender = peer.open_sender(ctl, ctx, "tcp://127.0.0.1:1", None)
    peer.send(ctl, sender, "tcp://127.0.0.1:1", b"P-x")
    assert sender.sock.calls[-1] == ("send", b"P-x", 0, 0x8000001, None)
    assert sender.poll is not None and sender.underlying == sender.sock.underlying   # the rest is the socket's


def test_peer_connect_calls_zmq_connect_peer_on_the_c_socket_and_raises_its_errno(monkeypatch):
    zmq = fake_zmq()
    peer = load("peer", zmq, monkeypatch)
    seen = []

    def fake_connect_peer(handle, endpoint):
        seen.append((handle, endpoint))
        if endpoint.startswith(b"tcp"):
            return 42
        ctypes.set_errno(111)
        return 0
    peer._lookup_result = (fake_connect_peer, None)
    sock = FakeSocket(zmq, zmq.PEER)
    assert peer.connect_peer(sock, "tcp://127.0.0.1:9") == 42
    with pytest.raises(FakeZMQError) as err:
        peer.connect_peer(sock, "ipc:///nowhere")
    assert err.value.errno == 111
    assert seen == [(0x1234, b"tcp://127.0.0.1:9"), (0x1234, b"ipc:///nowhere")]
    peer._lookup_result = (None, "no zmq_connect_peer here")
    with pytest.raises(RuntimeError, match="no zmq_connect_peer here"):
        peer.connect_peer(sock, "tcp://127.0.0.1:9")


# --- for real, in the pinned images -------------------------------------------------------

DRAFT_TARGETS = ("pyzmq-25.1.2-draft", "libzmq-4.3.4-draft", "libzmq-4.2.5-draft")
DRAFT_434 = ("pyzmq-25.1.2-draft", "libzmq-4.3.4-draft")     # libzmq 4.3.4: PEER and CHANNEL too


@pytest.fixture(scope="module")
def docker_backend(engine_client, built_images):
    from tests.conftest import docker_run
    with docker_run(engine_client, "test-draft") as backend:
        yield backend, built_images


def run_in(docker_backend, target_name, pattern, transport, variant, threads=10, msgs=200, **settings):
    from lab.cells import Cell
    from lab.requests import RunSettings
    from lab.runner import run_cell
    backend, targets = docker_backend
    target = targets[target_name]
    assert backend.prepare(target) is None
    cell = Cell(target.name, pattern, transport, variant, threads=threads, msgs=msgs)
    return run_cell(backend, target, cell, RunSettings(**{"repeat": 1, **settings}))


def threads_missing(report):
    return [t for t in report["threads"] if t["missing"]]


@pytest.mark.docker
@pytest.mark.parametrize("target", DRAFT_TARGETS)
def test_every_new_pattern_shared_over_tcp_in_each_draft_image(docker_backend, target):
    for pattern in NEW:
        verdict = run_in(docker_backend, target, pattern, "tcp", "shared")
        report = verdict.runs[0].report
        if target == "libzmq-4.2.5-draft" and pattern in ("peer", "channel"):
            assert verdict.worst == "unsupported", verdict.summary_line()
            assert "pyzmq 17.1.2" in report["reason"] and "libzmq 4.2.5" in report["reason"]
            assert "4.3.3" in report["reason"] and SOCKETS[pattern][1] in report["reason"]
            continue
        assert report["versions"]["draft"] is True
        if pattern == "radiodish":        # a RADIO drops what it sends before the join (and past its HWM)
            assert verdict.worst in ("ok", "lost"), verdict.summary_line()
        else:
            assert verdict.worst == "ok", verdict.summary_line()
            assert report["totals"]["received"] == report["totals"]["expected"] == 2000


@pytest.mark.docker
def test_stock_image_reports_every_new_pattern_unsupported(docker_backend):
    for pattern in NEW:
        verdict = run_in(docker_backend, "pyzmq-25.1.2", pattern, "inproc", "per-thread", threads=2, msgs=10)
        reason = verdict.runs[0].reason
        assert verdict.worst == "unsupported", verdict.summary_line()
        assert "draft" in reason and "libzmq 4.3.4" in reason and SOCKETS[pattern][1] in reason


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("target", DRAFT_434)
def test_scatter_gather_peer_and_shared_channel_deliver_everything(docker_backend, target):
    for pattern, variants in (("scattergather", ("shared", "per-thread")), ("peer", ("shared", "per-thread")),
                              ("channel", ("shared",))):
        for variant in variants:
            for transport in ("inproc", "ipc", "tcp"):
                verdict = run_in(docker_backend, target, pattern, transport, variant)
                report = verdict.runs[0].report
                assert verdict.worst == "ok", "%s/%s/%s: %s" % (pattern, transport, variant, verdict.summary_line())
                assert report["totals"]["received"] == 2000 and report["shutdown_received"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("target", DRAFT_TARGETS)
def test_a_new_radio_loses_what_it_sends_before_the_dishs_join_arrives(docker_backend, target):
    # The lab's question for RADIO/DISH: is the first message lost as with PUB/SUB? Each
    # control thread's fresh RADIO (and the shutdown's) sends at once; what it loses is the
    # start of its stream (the first gap is at #1), never the middle.
    for transport in ("inproc", "ipc", "tcp"):
        verdict = run_in(docker_backend, target, "radiodish", transport, "per-thread")
        report = verdict.runs[0].report
        assert verdict.worst == "lost", "%s: %s" % (transport, verdict.summary_line())
        missing = threads_missing(report)
        assert missing or not report["shutdown_received"], report["reason"]
        assert all(t["first_gap"]["expected"] == 1 for t in missing), report["reason"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("target", DRAFT_434)
def test_per_thread_channel_is_exclusive_rejected_senders_lose_or_hang(docker_backend, target):
    # A bound CHANNEL keeps one peer: over ipc/tcp the rejected senders' pings vanish; over
    # inproc their sends block for good (and libzmq may deadlock inside connect while pyzmq
    # holds the GIL, so only the lab's hard timeout ends that run).
    for transport in ("ipc", "tcp"):
        verdict = run_in(docker_backend, target, "channel", transport, "per-thread")
        report = verdict.runs[0].report
        assert verdict.worst in ("lost", "deadlock"), "%s: %s" % (transport, verdict.summary_line())
        assert any(t["received"] == 0 for t in report["threads"]), report["reason"]
    # inproc: which rejected sender blocks, or whose pings vanish, is a race; one run shows one of them
    verdict = run_in(docker_backend, target, "channel", "inproc", "per-thread", stall=1.0, timeout=8)
    assert verdict.worst in ("lost", "deadlock"), verdict.summary_line()
