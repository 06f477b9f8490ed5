"""The receiver's journal: what a killed receiver had taken, for the one started in its place.

A `kill:receiver` fault SIGKILLs the receiver's process and starts the same command again with
`--incarnation 2` (lab/backends/peers.py). Its counts lived in the killed process's memory; the
new one would report only what came after its start, and call everything before it lost. So a
receiver given `--journal PATH` appends every control message it takes, with its receive time,
to PATH, and one started with `--incarnation 2` and the same PATH first replays that journal
through the same bookkeeping (Run.take). What the killed process's libzmq had read from the
kernel but not yet handed to the application is not in the journal: it died with the process,
and it is exactly the loss a receiver kill is judged on (lab/expectations.py).

Each record is one os.write to a file in the container's tmpfs: a SIGKILL loses none that
returned (the page cache belongs to the kernel, not the process), and a record cut short by the
kill mid-write is recognised by its length and dropped on replay.

Format: a header line b"zmqlab-journal/1 <t0_ns>\\n" (the first receiver's t0, so the timeline
keeps one origin), then per message struct RECORD (receive time ns, length) and the message.
Standard library only, like every scenario module.
"""
import os
import struct

MAGIC = b"zmqlab-journal/1"
RECORD = struct.Struct("<QI")


class JournalError(Exception):
    """The journal is missing or not one (the restarted receiver says so and ends `error`)."""


class Writer:
    def __init__(self, path, t0_ns, append=False):
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self.fd = os.open(path, flags, 0o600)
        if not append:
            os.write(self.fd, b"%s %d\n" % (MAGIC, t0_ns))

    def record(self, now_ns, msg):
        os.write(self.fd, RECORD.pack(now_ns, len(msg)) + bytes(msg))

    def close(self):
        os.close(self.fd)


def read(path):
    """(t0_ns, [(receive time ns, message bytes), ...]) of a journal; a record cut short at the
    end (the kill came mid-write) is left out."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise JournalError("cannot read the receiver's journal %s: %s" % (path, exc.strerror or exc))
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 2 or parts[0] != MAGIC or not parts[1].isdigit():
        raise JournalError("%s is not a receiver's journal (header %r)" % (path, head[:40]))
    records, at = [], 0
    while at + RECORD.size <= len(body):
        now, size = RECORD.unpack_from(body, at)
        start = at + RECORD.size
        if start + size > len(body):
            break
        records.append((now, body[start:start + size]))
        at = start + size
    return int(parts[1]), records
