"""Draft SCATTER/GATHER: the thread-safe PUSH/PULL. The main loop binds one GATHER; 'shared'
is one SCATTER made by the main program and shared by every control thread, 'per-thread'
gives each thread its own SCATTER. Needs libzmq (>= 4.2.0, where NEWS lists SCATTER/GATHER
among the first draft sockets) and pyzmq built with the draft API.

Where the behaviour comes from: the seed programs (WallStProg/zmqtests threads/) tried only
one thread-safe pair, clientserver.cpp (one CLIENT made by main and shared, -poll only after
connect); this pattern does the same with SCATTER in place of CLIENT and plain sends, like
clientserver.py.

--poll: one poll after each SCATTER's connect, none after a send (as clientserver.cpp; no
POLL_AFTER_SEND)."""
from scenarios import threadsafe

unsupported, open_receiver, open_shared, open_sender = threadsafe.socket_code("SCATTER", "GATHER", "4.2.0")
