"""Exclusive PAIR, as in the reference: every control thread owns one PAIR socket and, since
only one PAIR connection may be active at a time, connects, sends and disconnects for
every single message (pairs.cpp sendCommand). --mutex serialises that sequence across threads.
--poll: pairs.cpp polls after zmq_connect only. (The write-up's remark that a poll after the
send makes the next zmq_disconnect fail with errno 2 describes code the program no longer has.)"""
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
