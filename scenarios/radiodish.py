"""Draft RADIO/DISH: the thread-safe PUB/SUB with groups. The main loop binds one DISH that
has joined GROUP; 'shared' is one RADIO made by the main program and shared by every control
thread, 'per-thread' gives each thread its own RADIO. Every ping is sent with GROUP.

A RADIO only sends to peers whose join has reached it, so this asks the PUB/SUB question of
the thread-safe sockets: is what a RADIO sends right after connect lost while the DISH's join
is still on its way? No sync is added on purpose; the socket code is the natural one.

Needs libzmq (>= 4.2.0, where NEWS lists RADIO/DISH among the first draft sockets) and pyzmq
built with the draft API (join and a message's group are pyzmq draft calls).

Where the behaviour comes from: the seed programs (WallStProg/zmqtests threads/) tried only
one thread-safe pair, clientserver.cpp (one CLIENT made by main and shared, -poll only after
connect); this pattern does the same with RADIO in place of CLIENT.

--poll: one poll after each RADIO's connect, none after a send (as clientserver.cpp; no
POLL_AFTER_SEND)."""
import zmq

GROUP = b"zmqlab"          # libzmq 4.2 allows at most 15 bytes (ZMQ_GROUP_MAX_LENGTH)


def unsupported(variant):
    if not zmq.has("draft"):
        return ("libzmq %s was built without the draft API (zmq.has('draft') is False): "
                "RADIO/DISH sockets are unavailable" % zmq.zmq_version())
    if not (hasattr(zmq, "RADIO") and hasattr(zmq, "DISH")):
        return "pyzmq %s has no RADIO/DISH constants" % zmq.pyzmq_version()
    ctx = zmq.Context()
    try:
        for kind in ("RADIO", "DISH"):
            try:
                sock = ctx.socket(getattr(zmq, kind))
            except zmq.ZMQError as exc:
                return ("libzmq %s (pyzmq %s) cannot create a %s socket (draft since libzmq 4.2.0): %s"
                        % (zmq.zmq_version(), zmq.pyzmq_version(), kind, exc))
            try:
                if kind == "DISH":
                    sock.join(GROUP)
                else:
                    zmq.Frame(b"").group = GROUP
            except (zmq.ZMQError, RuntimeError) as exc:
                return ("pyzmq %s on libzmq %s cannot %s (pyzmq built without the draft API?): %s"
                        % (zmq.pyzmq_version(), zmq.zmq_version(),
                           "join a DISH group" if kind == "DISH" else "set a message's group", exc))
            finally:
                sock.close(linger=0)
    finally:
        ctx.term()
    return None


def open_receiver(ctx):
    sock = ctx.socket(zmq.DISH)
    sock.join(GROUP)
    return sock


def open_shared(ctl, ctx, endpoint, variant):
    if variant != "shared":
        return None
    sock = ctl.socket(ctx, zmq.RADIO)
    ctl.connect(sock, endpoint)
    return sock


def open_sender(ctl, ctx, endpoint, shared):
    if shared is not None:
        return shared
    sock = ctl.socket(ctx, zmq.RADIO)
    ctl.connect(sock, endpoint)
    return sock


def send(ctl, sock, endpoint, payload):
    ctl.send(sock, payload, group=GROUP)
