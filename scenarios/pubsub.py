"""PUB per control thread connects to the SUB the main loop binds (subscribed to everything).

A connecting PUB drops what it sends before the SUB's subscription has reached it (the
slow-joiner race). --sync xpub makes each sender an XPUB that waits for that subscription
frame before its first send: the mitigation libzmq's maintainers point to.

--variant pub-binds (containers only) turns the layout round: each PUB binds its own port and
the SUB connects to them all, as in libzmq#916, where a restarted PUB is reconnected to and the
SUB must send its subscription again (session_base.cpp: "For subscriber sockets we hiccup the
inbound pipe, which will cause the socket object to resend all the subscriptions."). Until the
SUB's next reconnect attempt (ZMQ_RECONNECT_IVL, 100 ms) reaches a PUB that just bound, what
it sends is dropped: the slow joiner of this layout.
"""
import zmq

# --poll: pubsub.cpp polls (POLLIN, 1 ms) after zmq_connect and after every zmq_send.
POLL_AFTER_SEND = True


def open_receiver(ctx):
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return sock


def _attach(ctl, sock, endpoint):
    if ctl.variant == "pub-binds":      # the SUB connects to this PUB (libzmq#916's layout)
        ctl.bind_own(sock)
    else:
        ctl.connect(sock, endpoint)


def open_sender(ctl, ctx, endpoint, shared):
    if ctl.sync == "xpub":
        sock = ctl.socket(ctx, zmq.XPUB)
        _attach(ctl, sock, endpoint)
        # The SUB announces its subscription to every new pipe; its arrival proves the
        # pipe is attached on both sides, so nothing sent from here on is dropped.
        ctl.step("wait-subscription", sock.recv)
        return sock
    sock = ctl.socket(ctx, zmq.PUB)
    _attach(ctl, sock, endpoint)
    return sock
