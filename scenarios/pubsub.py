"""PUB per control thread connects to the SUB the main loop binds (subscribed to everything).

A connecting PUB drops what it sends before the SUB's subscription has reached it (the
slow-joiner race). --sync xpub makes each sender an XPUB that waits for that subscription
frame before its first send: the mitigation libzmq's maintainers point to.
"""
import zmq

# --poll: pubsub.cpp polls (POLLIN, 1 ms) after zmq_connect and after every zmq_send.
POLL_AFTER_SEND = True


def open_receiver(ctx):
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return sock


def open_sender(ctl, ctx, endpoint, shared):
    if ctl.sync == "xpub":
        sock = ctl.socket(ctx, zmq.XPUB)
        ctl.connect(sock, endpoint)
        # The SUB announces its subscription to every new pipe; its arrival proves the
        # pipe is attached on both sides, so nothing sent from here on is dropped.
        ctl.step("wait-subscription", sock.recv)
        return sock
    sock = ctl.socket(ctx, zmq.PUB)
    ctl.connect(sock, endpoint)
    return sock
