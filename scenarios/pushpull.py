"""PUSH per control thread -> one bound PULL: sends block while no peer is there."""
import zmq

# --poll: pushpull.cpp polls (POLLIN, 1 ms) after zmq_connect and after every zmq_send.
POLL_AFTER_SEND = True


def open_receiver(ctx):
    return ctx.socket(zmq.PULL)


def open_sender(ctl, ctx, endpoint, shared):
    sock = ctl.socket(ctx, zmq.PUSH)
    ctl.connect(sock, endpoint)
    return sock
