"""Draft PEER: thread-safe sockets where a sender addresses each message to the routing id of
one of its connections. The main loop binds one PEER; 'shared' is one PEER made by the main
program, connected once and shared by every control thread, 'per-thread' gives each thread
its own. A sending PEER connects with zmq_connect_peer (which returns the new connection's
routing id) and sends every ping with that routing id.

Needs libzmq >= 4.3.3 (NEWS: "New DRAFT socket type, PEER, ... and a related zmq_connect_peer
function") built with the draft API, and a pyzmq built with it (routing ids on messages) that
knows the PEER constant (pyzmq 17 does not). No pyzmq up to 27 wraps zmq_connect_peer, so it is
called through ctypes on the libzmq this pyzmq already loaded (socket.underlying is the C
socket): only libraries already mapped into the process are opened (RTLD_NOLOAD, never a
second copy), and only when exactly one libzmq is mapped; otherwise the pattern is
`unsupported` with the reason.

Where the behaviour comes from: the seed programs (WallStProg/zmqtests threads/) tried only
one thread-safe pair, clientserver.cpp (one CLIENT made by main and shared, -poll only after
connect); this pattern does the same with PEER in place of CLIENT.

--poll: one poll after each PEER's connect, none after a send (as clientserver.cpp; no
POLL_AFTER_SEND)."""
import ctypes
import os

import zmq

from scenarios import threadsafe

_lookup_result = None      # (zmq_connect_peer or None, reason or None), found once


def _mapped_libraries():
    """Shared objects mapped into this process (Linux /proc): [(start, end, path)] in load order."""
    regions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if path.startswith("/") and ".so" in os.path.basename(path):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                regions.append((start, end, path))
    return regions


def _symbol(lib, name):
    try:
        fn = getattr(lib, name)
    except AttributeError:
        return None, None
    return fn, ctypes.cast(fn, ctypes.c_void_p).value


def _find_connect_peer():
    where = "libzmq %s (pyzmq %s)" % (zmq.zmq_version(), zmq.pyzmq_version())
    if not hasattr(os, "RTLD_NOLOAD"):
        return None, "%s: cannot reach zmq_connect_peer (no RTLD_NOLOAD on this platform)" % where
    try:
        regions = _mapped_libraries()
    except (OSError, ValueError) as exc:
        return None, "%s: cannot list the loaded libraries to find zmq_connect_peer: %s" % (where, exc)

    def owner(addr):
        return next((path for start, end, path in regions if start <= addr < end), "?")

    copies, connect_peer = {}, {}        # code address -> the file that holds it
    seen = set()
    for _, _, path in regions:
        if path in seen:
            continue
        seen.add(path)
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD, use_errno=True)
        except OSError:
            continue
        _, socket_addr = _symbol(lib, "zmq_socket")
        if socket_addr is None:
            continue
        copies.setdefault(socket_addr, owner(socket_addr))
        fn, addr = _symbol(lib, "zmq_connect_peer")
        if fn is not None:
            connect_peer.setdefault(addr, (fn, lib, owner(addr)))
    if not copies:
        return None, ("%s: no loaded library exports libzmq's functions (linked into pyzmq with hidden "
                      "symbols?), so zmq_connect_peer cannot be reached and pyzmq has no connect_peer" % where)
    if len(copies) > 1:
        return None, ("%s: %d copies of libzmq are loaded (%s); cannot tell which one made the socket, "
                      "so zmq_connect_peer is not called" % (where, len(copies), ", ".join(sorted(copies.values()))))
    libzmq = list(copies.values())[0]
    if not connect_peer:
        return None, ("%s: %s does not export zmq_connect_peer (a draft function since libzmq 4.3.3) and "
                      "pyzmq has no connect_peer" % (where, libzmq))
    fn, lib, path = list(connect_peer.values())[0]
    if len(connect_peer) != 1 or path != libzmq:
        return None, ("%s: zmq_connect_peer is in %s but zmq_socket in %s; not calling it"
                      % (where, ", ".join(sorted(p for _, _, p in connect_peer.values())), libzmq))
    major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    lib.zmq_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
    found = "%d.%d.%d" % (major.value, minor.value, patch.value)
    if found != zmq.zmq_version():
        return None, "%s: the loaded %s reports libzmq %s, not pyzmq's" % (where, path, found)
    fn.restype = ctypes.c_uint32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return fn, None


def _connect_peer_fn():
    global _lookup_result
    if _lookup_result is None:
        try:
            _lookup_result = _find_connect_peer()
        except Exception as exc:  # a probe of the process's libraries must never crash the run
            _lookup_result = None, "looking for zmq_connect_peer failed: %s: %s" % (type(exc).__name__, exc)
    return _lookup_result


def connect_peer(sock, endpoint):
    """zmq_connect_peer(sock, endpoint): the routing id of the new connection; ZMQError on failure."""
    fn, reason = _connect_peer_fn()
    if fn is None:
        raise RuntimeError(reason)
    routing_id = fn(sock.underlying, endpoint.encode())
    if not routing_id:
        raise zmq.ZMQError(ctypes.get_errno())
    return routing_id


class Peer(object):
    """A sending PEER and the routing id of its one connection (what every send names).
    Everything else is the socket's, so Ctl.connect(peer, endpoint) connects it with
    zmq_connect_peer and polls it like any socket."""

    def __init__(self, sock):
        self.sock, self.routing_id = sock, None

    def connect(self, endpoint):
        self.routing_id = connect_peer(self.sock, endpoint)

    def __getattr__(self, name):
        return getattr(self.sock, name)


_unsupported, open_receiver, open_shared, open_sender = threadsafe.socket_code("PEER", "PEER", "4.3.3", wrap=Peer)


def unsupported(variant):
    """The sockets, then a message's routing id in this pyzmq, then zmq_connect_peer."""
    reason = _unsupported(variant)
    if reason:
        return reason
    try:
        zmq.Frame(b"").routing_id = 1
    except (zmq.ZMQError, RuntimeError) as exc:
        return ("pyzmq %s on libzmq %s cannot set a message's routing id (pyzmq built without the "
                "draft API?): %s" % (zmq.pyzmq_version(), zmq.zmq_version(), exc))
    return _connect_peer_fn()[1]


def send(ctl, peer, endpoint, payload):
    ctl.send(peer.sock, payload, routing_id=peer.routing_id)
