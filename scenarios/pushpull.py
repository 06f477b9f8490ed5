"""PUSH per control thread -> one bound PULL: sends block while no peer is there."""
import zmq


def open_receiver(ctx):
    return ctx.socket(zmq.PULL)


def open_sender(ctl, ctx, endpoint, shared):
    sock = ctl.socket(ctx, zmq.PUSH)
    ctl.connect(sock, endpoint)
    return sock
