"""Draft CLIENT/SERVER: thread-safe sockets, so (as in the reference) one CLIENT made by the
main program is shared by every control thread ('shared'); 'per-thread' gives each thread
its own CLIENT. Needs libzmq and pyzmq built with the draft API. --poll: clientserver.cpp polls
once, after the shared CLIENT's zmq_connect, never after a send."""
import zmq


def unsupported(variant):
    # Stock wheels define zmq.CLIENT and even create the sockets, but without the draft API
    # routing ids fail, so ask libzmq what it was built with rather than hasattr(zmq, ...).
    if not zmq.has("draft"):
        return ("libzmq %s was built without the draft API (zmq.has('draft') is False): "
                "CLIENT/SERVER sockets are unavailable" % zmq.zmq_version())
    if not hasattr(zmq, "CLIENT"):
        return "pyzmq %s has no CLIENT/SERVER constants" % zmq.pyzmq_version()
    return None


def open_receiver(ctx):
    return ctx.socket(zmq.SERVER)


def open_shared(ctl, ctx, endpoint, variant):
    if variant != "shared":
        return None
    sock = ctl.socket(ctx, zmq.CLIENT)
    ctl.connect(sock, endpoint)
    return sock


def open_sender(ctl, ctx, endpoint, shared):
    if shared is not None:
        return shared
    sock = ctl.socket(ctx, zmq.CLIENT)
    ctl.connect(sock, endpoint)
    return sock
