"""REQ per control thread -> one bound REP: every ping is a request, and the main loop replies
(one empty frame) right after it receives it; a sender's send step is the request and then a
blocking receive of its reply. The shutdown message is one more request, answered the same way.

Where the behaviour comes from: not the seed programs (WallStProg/zmqtests threads/ has no
REQ/REP); the rules are zmq_socket(3)'s, libzmq doc/zmq_socket.txt (4.3.4): a REQ "allows only
an alternating sequence of zmq_send(request) and subsequent zmq_recv(reply) calls", each
request "round-robined among all services", its "Action in mute state: Block", and it "shall
not discard messages"; a REP receives requests "fair-queued from among all clients" and sends
each reply "to the client that issued the last request. If the original requester does not exist
any more the reply is silently discarded". So one REP serving N REQs in turn delivers every
request, and a REQ whose REP is gone after the request left waits for its reply forever: the
lockstep hang of libzmq#1227, which the lab reports as a `deadlock` with the sender's thread in
state "wait-reply" (no ZMQ_REQ_RELAXED/ZMQ_REQ_CORRELATE, no receive timeout: the hang is the
evidence a fault scenario looks for).

--nowait: a request refused with EAGAIN (counted apart, never lost) leaves the REQ ready to send
again, so no reply is awaited for it. Known libzmq behaviour the socket options meet here (issue
threads, not man pages): libzmq#3060, a REQ with ZMQ_HEARTBEAT_IVL closing its connection after
the first PING/PONG (4.2.3); libzmq#4750, a REP with SNDHWM 1 losing a reply now and then (4.3.5):
either shows up as a `deadlock` in "wait-reply". --poll: one poll after connect, none after a send (the
reply is what arrives on a REQ; a poll there would only wait for it).
"""
import zmq


def open_receiver(ctx):
    return ctx.socket(zmq.REP)


def open_sender(ctl, ctx, endpoint, shared):
    sock = ctl.socket(ctx, zmq.REQ)
    ctl.connect(sock, endpoint)
    return sock


def send(ctl, sock, endpoint, payload):
    refused = len(ctl.record.refused)
    ctl.send(sock, payload)
    if len(ctl.record.refused) == refused:          # the request left: its reply must follow
        ctl.step("wait-reply", sock.recv)


def reply(sock, msg):
    """The main loop's answer to the request it just took (harness: the optional `reply` hook).
    A REP routes to the last requester and drops a reply to one that is gone: it never blocks."""
    sock.send(b"")
