"""Draft CHANNEL: the thread-safe exclusive PAIR. The main loop binds one CHANNEL; 'shared' is
one CHANNEL made by the main program, connected once and shared by every control thread;
'per-thread' gives each thread its own connected CHANNEL. Like PAIR, a CHANNEL accepts a
single peer: the bound one keeps its first connection and rejects the others, so
'per-thread' asks what happens to the senders it rejected (their pings vanish, or their
sends block). Needs libzmq >= 4.3.3 (NEWS: "New DRAFT socket type: ZMQ_CHANNEL is a
thread-safe alternative to ZMQ_PAIR"), built with the draft API, and a pyzmq that knows
the CHANNEL constant (pyzmq 17 does not).

Where the behaviour comes from: the seed programs (WallStProg/zmqtests threads/) tried only
one thread-safe pair, clientserver.cpp (one CLIENT made by main and shared, -poll only after
connect); this pattern does the same with CHANNEL in place of CLIENT and plain sends, like
clientserver.py (not pairs.cpp's connect/send/disconnect per message).

--poll: one poll after each CHANNEL's connect, none after a send (as clientserver.cpp; no
POLL_AFTER_SEND)."""
from scenarios import threadsafe

unsupported, open_receiver, open_shared, open_sender = threadsafe.socket_code("CHANNEL", "CHANNEL", "4.3.3")
