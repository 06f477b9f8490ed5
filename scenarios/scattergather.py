"""Draft SCATTER/GATHER: the thread-safe PUSH/PULL. The main loop binds one GATHER; 'shared'
is one SCATTER made by the main program and shared by every control thread, 'per-thread'
gives each thread its own SCATTER. Needs libzmq (>= 4.2.0, where NEWS lists SCATTER/GATHER
among the first draft sockets) and pyzmq built with the draft API.

Where the behaviour comes from: the seed programs (WallStProg/zmqtests threads/) tried only
one thread-safe pair, clientserver.cpp (one CLIENT made by main and shared, -poll only after
connect); this pattern does the same with SCATTER in place of CLIENT and plain sends, like
clientserver.py.

--poll: one poll after each SCATTER's connect, none after a send (as clientserver.cpp; no
POLL_AFTER_SEND)."""
import zmq


def unsupported(variant):
    if not zmq.has("draft"):
        return ("libzmq %s was built without the draft API (zmq.has('draft') is False): "
                "SCATTER/GATHER sockets are unavailable" % zmq.zmq_version())
    if not (hasattr(zmq, "SCATTER") and hasattr(zmq, "GATHER")):
        return "pyzmq %s has no SCATTER/GATHER constants" % zmq.pyzmq_version()
    ctx = zmq.Context()
    try:
        for kind in ("SCATTER", "GATHER"):
            try:
                ctx.socket(getattr(zmq, kind)).close(linger=0)
            except zmq.ZMQError as exc:
                return ("libzmq %s (pyzmq %s) cannot create a %s socket (draft since libzmq 4.2.0): %s"
                        % (zmq.zmq_version(), zmq.pyzmq_version(), kind, exc))
    finally:
        ctx.term()
    return None


def open_receiver(ctx):
    return ctx.socket(zmq.GATHER)


def open_shared(ctl, ctx, endpoint, variant):
    if variant != "shared":
        return None
    sock = ctl.socket(ctx, zmq.SCATTER)
    ctl.connect(sock, endpoint)
    return sock


def open_sender(ctl, ctx, endpoint, shared):
    if shared is not None:
        return shared
    sock = ctl.socket(ctx, zmq.SCATTER)
    ctl.connect(sock, endpoint)
    return sock
