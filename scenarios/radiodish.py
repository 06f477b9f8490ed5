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

from scenarios import threadsafe

GROUP = b"zmqlab"          # libzmq 4.2 allows at most 15 bytes (ZMQ_GROUP_MAX_LENGTH)

_unsupported, _open_dish, open_shared, open_sender = threadsafe.socket_code("RADIO", "DISH", "4.2.0")


def unsupported(variant):
    """The sockets, then pyzmq's own draft calls: join, and a message's group."""
    reason = _unsupported(variant)
    if reason:
        return reason
    ctx = zmq.Context()
    try:
        dish = ctx.socket(zmq.DISH)
        try:
            dish.join(GROUP)
            zmq.Frame(b"").group = GROUP
        except (zmq.ZMQError, RuntimeError) as exc:
            return ("pyzmq %s on libzmq %s cannot join a DISH group or set a message's group (pyzmq "
                    "built without the draft API?): %s" % (zmq.pyzmq_version(), zmq.zmq_version(), exc))
        finally:
            dish.close(linger=0)
    finally:
        ctx.term()
    return None


def open_receiver(ctx):
    sock = _open_dish(ctx)
    sock.join(GROUP)
    return sock


def send(ctl, sock, endpoint, payload):
    ctl.send(sock, payload, group=GROUP)
