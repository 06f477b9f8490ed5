"""Draft CLIENT/SERVER: thread-safe sockets, so (as in the reference) one CLIENT made by the
main program is shared by every control thread ('shared'); 'per-thread' gives each thread
its own CLIENT. Needs libzmq and pyzmq built with the draft API. --poll: clientserver.cpp polls
once, after the shared CLIENT's zmq_connect, never after a send."""
from scenarios import threadsafe

# clientserver.cpp includes zmq.h with ZMQ_BUILD_DRAFT_API; libzmq 4.2.0 introduced the pair.
unsupported, open_receiver, open_shared, open_sender = threadsafe.socket_code("CLIENT", "SERVER", "4.2.0")
