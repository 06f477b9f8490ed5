"""The socket code every thread-safe (draft) pattern shares, as clientserver.cpp does it (the only
thread-safe pair of the original programs, WallStProg/zmqtests threads/): the main loop binds one
receiver; variant 'shared' is one sender made and connected by the main program and used by
every control thread, 'per-thread' one sender per thread. The originals poll after connect only
for these (clientserver.cpp), so no thread-safe pattern sets POLL_AFTER_SEND.

A pattern module names its socket types and the libzmq release that introduced them:

    unsupported, open_receiver, open_shared, open_sender = threadsafe.socket_code("SCATTER", "GATHER", "4.2.0")

and adds only what is its own (a group on every send, a routing id, a join).
"""
import zmq


def socket_code(sender, receiver, since, wrap=None):
    """(unsupported, open_receiver, open_shared, open_sender) for a SENDER -> RECEIVER pair.
    `wrap(sock)` (optional) stands in for a sending socket, e.g. one that remembers its peer's
    routing id; Ctl.connect(wrapped, endpoint) calls wrapped.connect."""
    kinds = tuple(dict.fromkeys((sender, receiver)))
    label = "/".join(kinds)

    def unsupported(variant):
        # Stock wheels define some draft constants and even create the sockets, but without
        # the draft API their calls fail: ask libzmq what it was built with first.
        if not zmq.has("draft"):
            return ("libzmq %s was built without the draft API (zmq.has('draft') is False): "
                    "%s sockets are unavailable" % (zmq.zmq_version(), label))
        missing = [k for k in kinds if not hasattr(zmq, k)]
        if missing:
            return ("pyzmq %s has no %s constant (%s is a libzmq >= %s draft; this is libzmq %s)"
                    % (zmq.pyzmq_version(), "/".join(missing), label, since, zmq.zmq_version()))
        ctx = zmq.Context()
        try:
            for kind in kinds:
                try:
                    ctx.socket(getattr(zmq, kind)).close(linger=0)
                except zmq.ZMQError as exc:
                    return ("libzmq %s (pyzmq %s) cannot create a %s socket (draft since libzmq %s): %s"
                            % (zmq.zmq_version(), zmq.pyzmq_version(), kind, since, exc))
        finally:
            ctx.term()
        return None

    def open_receiver(ctx):
        return ctx.socket(getattr(zmq, receiver))

    def connected(ctl, ctx, endpoint):
        sock = ctl.socket(ctx, getattr(zmq, sender))
        sock = wrap(sock) if wrap else sock
        ctl.connect(sock, endpoint)
        return sock

    def open_shared(ctl, ctx, endpoint, variant):
        return connected(ctl, ctx, endpoint) if variant == "shared" else None

    def open_sender(ctl, ctx, endpoint, shared):
        return shared if shared is not None else connected(ctl, ctx, endpoint)

    return unsupported, open_receiver, open_shared, open_sender
