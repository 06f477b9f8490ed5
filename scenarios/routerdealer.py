"""DEALER per control thread -> one bound ROUTER (the reference never tried it).

The ROUTER prepends the peer's identity frame; the payload is the last frame.
"""
import zmq

# --poll: as pushpull.cpp (the write-up expects ROUTER/DEALER to behave like PUSH/PULL).
POLL_AFTER_SEND = True


def open_receiver(ctx):
    return ctx.socket(zmq.ROUTER)


def recv(sock):
    return sock.recv_multipart(zmq.NOBLOCK)[-1]


def open_sender(ctl, ctx, endpoint, shared):
    sock = ctl.socket(ctx, zmq.DEALER)
    ctl.connect(sock, endpoint)
    return sock
