"""Exclusive PAIR, as in the reference: every control thread owns one PAIR socket and, since
only one PAIR connection may be active at a time, connects, sends and disconnects for
every single message. --mutex serialises that sequence across threads."""
import zmq


def open_receiver(ctx):
    return ctx.socket(zmq.PAIR)


def open_sender(ctl, ctx, endpoint, shared):
    return ctl.socket(ctx, zmq.PAIR)


def send(ctl, sock, endpoint, payload):
    with ctl.serialised():
        ctl.connect(sock, endpoint)
        ctl.send(sock, payload)
        ctl.step("disconnect", sock.disconnect, endpoint)
