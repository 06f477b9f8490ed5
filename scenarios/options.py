"""The socket options that matter when a peer fails mid-run, as one frozen value: what the
scenario flags ask for, how a cell's label names it, and which option goes on which socket.
Pure (no zmq): the lab validates and labels cells with it on a host without pyzmq; the
harness's socket factory (scenarios/harness.py: Run.configure) turns `settings()` into
setsockopt calls.

What each option does, from libzmq's zmq_setsockopt(3) (doc/zmq_setsockopt.txt of v4.2.0 to
v4.3.4, doc/zmq_setsockopt.adoc since; the lab's pins span 4.1.6 to 4.3.5):

  --heartbeat IVL[:TIMEOUT[:TTL]]   ZMQ_HEARTBEAT_IVL: "a 'PING' ZMTP command will be sent every
      ZMQ_HEARTBEAT_IVL milliseconds"; ZMQ_HEARTBEAT_TIMEOUT: how long to wait "after sending a
      'PING' ... and not receiving any traffic" before timing the connection out (default: the
      IVL); ZMQ_HEARTBEAT_TTL: "the remote side shall time out the connection if it does not
      receive any more traffic within the TTL period", "rounded down to the nearest decisecond,
      any value less than 100 will have no effect", at most 6553599. All three "when using
      connection-oriented transports" only, and new in libzmq 4.2.0 (absent from the 4.1.6
      page and zmq.h): older is `unsupported`. Set on both sides, so either notices a dead peer.
  --immediate      ZMQ_IMMEDIATE=1: "messages shall be queued only to completed connections"
      instead of filling a pipe still awaiting its connection ("lost" messages on round-robin
      sockets: REQ, PUSH, DEALER). Connection-oriented transports; on the connecting senders.
  --reconnect-ivl MS   ZMQ_RECONNECT_IVL: the wait between attempts "to reconnect disconnected
      peers" (default 100; -1: no reconnection). Only a connecting socket reconnects: senders.
  --hwm N          ZMQ_SNDHWM and ZMQ_RCVHWM (0: no limit; default 1000): "the maximum number
      of outstanding messages 0MQ shall queue in memory for any single peer"; at the limit the
      socket blocks or drops by its type (zmq_socket(3)). One number for both, on every pattern
      socket: the queue a paused or partitioned peer fills is the sender's pipe *and* the
      receiver's (inproc pipes even sum both sides' marks), so the bound a fault tests is the
      pair; two knobs would double the cells without a question the lab asks of them.
  --sndbuf N, --rcvbuf N   ZMQ_SNDBUF / ZMQ_RCVBUF: "the underlying kernel transmit [receive]
      buffer size for the 'socket' to the specified size in bytes" (SO_SNDBUF/SO_RCVBUF; Linux
      doubles the value and clamps it to its minimum and to net.core.wmem_max/rmem_max). On
      every pattern socket, like --hwm: a paused peer's backlog sits in the sender's send buffer
      and the receiver's receive buffer before any HWM is reached (~17-byte pings: the default
      buffers hold thousands per connection, so a PUB never reaches its mark), and each side
      owns one of them. tcp only: libzmq sets them on the socket it opens for a connect or a
      listen (v4.3.5 src/tcp.cpp tcp_open_socket, "Set the socket buffer limits for the
      underlying socket."; v4.1.6 the same in tcp_listener.cpp/tcp_connecter.cpp) and never on
      an accepted one, which inherits the listener's (Linux copies the buffer sizes to the
      accepted socket); ipc and inproc ignore them. 1 byte or more: 0 means "leave the OS
      default" on libzmq < 4.2 but "set 0" (the kernel's minimum) from 4.2.0 on, whose default
      became -1 (doc/zmq_setsockopt.txt, src/options.cpp), so it would ask different pins
      different things.
  --xpub-nodrop    ZMQ_XPUB_NODROP=1 on the sender's XPUB (pubsub --sync xpub): "return error
      EAGAIN if SENDHWM is reached" instead of dropping silently (since libzmq 4.1.0). With
      --nowait such a send is refused and counted apart, never as lost; without it the send
      blocks until the SUB drains.

A cell's label names its options after its other ones, in this order (no ':' in a label: it is
part of results file names, cells/<key>.json, and CI artifact uploads and NTFS refuse ':'):
    +hb100  +hb100-300  +hb100-300-1000  +immediate  +rivl50  +hwm10  +buf4k  +nodrop
Buffers in bytes, in whole KiB as Nk ('buf4k' = 4096, 'buf1500' = 1500): `bufN` sets both,
`sndbufN`/`rcvbufN` one; a label says `buf` when the two are equal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

INT_MAX = 2 ** 31 - 1
TTL_MIN_MS, TTL_MAX_MS = 100, 6553599       # zmq_setsockopt(3), ZMQ_HEARTBEAT_TTL
HEARTBEAT_SINCE = (4, 2, 0)
NODROP_SINCE = (4, 1, 0)
CONNECTION_TRANSPORTS = ("ipc", "tcp")
_TOKEN = re.compile(r"^(?:hb(\d+)(?:-(\d+)(?:-(\d+))?)?|immediate|rivl(-1|\d+)|hwm(\d+)|nodrop"
                    r"|(snd|rcv)?buf(\d+)(k?))$")
BUFFER_TRANSPORTS = ("tcp",)                # libzmq sets SO_SNDBUF/SO_RCVBUF on tcp sockets only
KNOWN = "hbIVL[-TIMEOUT[-TTL]], immediate, rivlMS, hwmN, bufN[k], sndbufN[k], rcvbufN[k], nodrop"


class OptionError(ValueError):
    """A bad option or combination: one line (scenarios/flags.py and lab/cells.py re-raise it
    as their own error)."""


@dataclass(frozen=True)
class SockOpts:
    heartbeat: tuple[int, ...] = ()       # (IVL,), (IVL, TIMEOUT) or (IVL, TIMEOUT, TTL), ms
    immediate: bool = False
    reconnect_ivl: int | None = None      # ms; -1: never reconnect
    hwm: int | None = None                # messages, SNDHWM and RCVHWM; 0: no limit
    xpub_nodrop: bool = False
    sndbuf: int | None = None             # bytes, ZMQ_SNDBUF; None: the OS default
    rcvbuf: int | None = None             # bytes, ZMQ_RCVBUF

    def __post_init__(self):
        problem = self._bad_values()
        if problem:
            raise OptionError(problem)

    def _bad_values(self) -> str | None:
        hb = self.heartbeat
        if not isinstance(hb, tuple) or not 0 <= len(hb) <= 3 or not all(_is_int(v) for v in hb):
            return "--heartbeat takes IVL[:TIMEOUT[:TTL]], whole milliseconds"
        if hb and not all(1 <= v <= INT_MAX for v in hb[:2]):
            return "--heartbeat IVL and TIMEOUT must be 1 ms or more (0 would turn heartbeats off)"
        if len(hb) == 3 and not TTL_MIN_MS <= hb[2] <= TTL_MAX_MS:
            return ("--heartbeat TTL must be %d..%d ms (libzmq keeps deciseconds: below %d has no effect)"
                    % (TTL_MIN_MS, TTL_MAX_MS, TTL_MIN_MS))
        if not isinstance(self.immediate, bool) or not isinstance(self.xpub_nodrop, bool):
            return "--immediate and --xpub-nodrop are on or off"
        if self.reconnect_ivl is not None and not (_is_int(self.reconnect_ivl) and -1 <= self.reconnect_ivl <= INT_MAX):
            return "--reconnect-ivl must be -1 (never reconnect) or 0 ms or more"
        if self.hwm is not None and not (_is_int(self.hwm) and 0 <= self.hwm <= INT_MAX):
            return "--hwm must be 0 (no limit) or more messages"
        for name in ("sndbuf", "rcvbuf"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and 1 <= value <= INT_MAX):
                return ("--%s must be 1..%d bytes (0 means the OS default on libzmq < 4.2, the kernel's "
                        "minimum since)" % (name, INT_MAX))
        return None

    def __bool__(self) -> bool:
        return self != SockOpts()

    # --- names: the label, the scenario flags, the report -----------------------------------
    @property
    def label(self) -> str:
        """'+hb100-300+immediate+rivl50+hwm10+nodrop' (those set), '' when none is."""
        return "".join("+" + t for t in self.tokens())

    def tokens(self) -> list[str]:
        out = []
        if self.heartbeat:
            out.append("hb" + "-".join(str(v) for v in self.heartbeat))
        if self.immediate:
            out.append("immediate")
        if self.reconnect_ivl is not None:
            out.append("rivl%d" % self.reconnect_ivl)
        if self.hwm is not None:
            out.append("hwm%d" % self.hwm)
        if self.sndbuf is not None and self.sndbuf == self.rcvbuf:
            out.append("buf" + _bytes(self.sndbuf))
        else:
            out += [name + _bytes(v) for name, v in (("sndbuf", self.sndbuf), ("rcvbuf", self.rcvbuf))
                    if v is not None]
        if self.xpub_nodrop:
            out.append("nodrop")
        return out

    @classmethod
    def from_label(cls, text: str) -> "SockOpts":
        """'hb100-300+immediate' (a label's suffix, '+' optional in front), or 'none' / ''.
        `bufN` is `sndbufN+rcvbufN`; naming either buffer twice is an error."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        fields: dict = {}
        for token in text.lstrip("+").split("+"):
            m = _TOKEN.match(token.strip())
            if not m:
                raise OptionError("unknown socket option %r (known: %s)" % (token, KNOWN))
            hb, rivl, hwm = m.group(1, 2, 3), m.group(4), m.group(5)
            name = token.strip()
            if m.group(7) is not None:
                size = int(m.group(7)) * (1024 if m.group(8) else 1)
                for key in {"snd": ("sndbuf",), "rcv": ("rcvbuf",), None: ("sndbuf", "rcvbuf")}[m.group(6)]:
                    if key in fields:
                        raise OptionError("socket option %s given twice in %r" % (key, text))
                    fields[key] = size
                continue
            key = "heartbeat" if hb[0] else "reconnect_ivl" if rivl else "hwm" if hwm else \
                "immediate" if name == "immediate" else "xpub_nodrop"
            if key in fields:
                raise OptionError("socket option %s given twice in %r" % (key, text))
            fields[key] = (tuple(int(v) for v in hb if v is not None) if hb[0] else
                           int(rivl) if rivl else int(hwm) if hwm else True)
        return cls(**fields)

    def argv(self) -> list[str]:
        """The scenario flags that ask for exactly these options."""
        out = []
        if self.heartbeat:
            out += ["--heartbeat", ":".join(str(v) for v in self.heartbeat)]
        if self.immediate:
            out.append("--immediate")
        if self.reconnect_ivl is not None:
            out += ["--reconnect-ivl", str(self.reconnect_ivl)]
        if self.hwm is not None:
            out += ["--hwm", str(self.hwm)]
        if self.sndbuf is not None:
            out += ["--sndbuf", str(self.sndbuf)]
        if self.rcvbuf is not None:
            out += ["--rcvbuf", str(self.rcvbuf)]
        if self.xpub_nodrop:
            out.append("--xpub-nodrop")
        return out

    def to_dict(self) -> dict:
        """Only what is set: a run report's params.sockopts, a cell dict's `sockopts`."""
        out: dict = {}
        if self.heartbeat:
            out["heartbeat"] = list(self.heartbeat)
        if self.immediate:
            out["immediate"] = True
        if self.reconnect_ivl is not None:
            out["reconnect_ivl"] = self.reconnect_ivl
        if self.hwm is not None:
            out["hwm"] = self.hwm
        for name in ("sndbuf", "rcvbuf"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.xpub_nodrop:
            out["xpub_nodrop"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> "SockOpts":
        data = dict(data or {})
        unknown = set(data) - {"heartbeat", "immediate", "reconnect_ivl", "hwm", "xpub_nodrop", "sndbuf", "rcvbuf"}
        if unknown:
            raise OptionError("unknown socket options %s" % ", ".join(sorted(unknown)))
        if "heartbeat" in data:
            data["heartbeat"] = tuple(data["heartbeat"])
        return cls(**data)

    # --- what applies where ---------------------------------------------------------------
    def check(self, pattern: str, transport: str, sync: str) -> str | None:
        """Why these options make no sense for a cell (one line), or None."""
        if transport not in CONNECTION_TRANSPORTS:
            needs = [f for f, on in (("--heartbeat", self.heartbeat), ("--immediate", self.immediate),
                                     ("--reconnect-ivl", self.reconnect_ivl is not None)) if on]
            if needs:
                return ("%s: for connection-oriented transports only (ipc, tcp), not %s"
                        % ("/".join(needs), transport))
        if transport not in BUFFER_TRANSPORTS:
            needs = [f for f, v in (("--sndbuf", self.sndbuf), ("--rcvbuf", self.rcvbuf)) if v is not None]
            if needs:
                return ("%s: kernel socket buffers libzmq sets on tcp sockets only, not %s"
                        % ("/".join(needs), transport))
        if self.xpub_nodrop and (pattern != "pubsub" or sync != "xpub"):
            return "--xpub-nodrop applies to the senders' XPUB: --pattern pubsub --sync xpub only"
        return None

    def settings(self, kind: str, side: str) -> list[tuple[str, int]]:
        """(zmq constant name, value) for one pattern socket: `kind` its type name ('XPUB'),
        `side` 'sender' (connects) or 'receiver' (binds). In the order they are set."""
        out = []
        if self.heartbeat:
            out += list(zip(("HEARTBEAT_IVL", "HEARTBEAT_TIMEOUT", "HEARTBEAT_TTL"), self.heartbeat))
        if self.hwm is not None:
            out += [("SNDHWM", self.hwm), ("RCVHWM", self.hwm)]
        # before bind/connect (the harness configures every socket first): libzmq copies them
        # onto the tcp socket it opens then, the listener's passing to each accepted one
        if self.sndbuf is not None:
            out.append(("SNDBUF", self.sndbuf))
        if self.rcvbuf is not None:
            out.append(("RCVBUF", self.rcvbuf))
        if side == "sender":
            if self.immediate:
                out.append(("IMMEDIATE", 1))
            if self.reconnect_ivl is not None:
                out.append(("RECONNECT_IVL", self.reconnect_ivl))
            if self.xpub_nodrop and kind == "XPUB":
                out.append(("XPUB_NODROP", 1))
        return out

    def unsupported(self, libzmq: tuple[int, ...], names) -> str | None:
        """Why this libzmq (its version tuple) with this pyzmq (`names`: the constants it
        defines) cannot set these options, or None. Decided before any socket exists."""
        version = ".".join(str(v) for v in libzmq)
        if self.heartbeat:
            if tuple(libzmq) < HEARTBEAT_SINCE:
                return ("ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL are new in libzmq 4.2.0 (zmq_setsockopt(3)); "
                        "this is libzmq %s" % version)
        if self.xpub_nodrop and tuple(libzmq) < NODROP_SINCE:
            return "ZMQ_XPUB_NODROP is new in libzmq 4.1.0; this is libzmq %s" % version
        needed = {n for side in ("sender", "receiver") for n, _ in self.settings("XPUB", side)}
        missing = sorted(n for n in needed if n not in names)
        if missing:
            return "this pyzmq has no %s constant (libzmq %s)" % ("/".join(missing), version)
        return None


def _bytes(n: int) -> str:
    """4096 -> '4k', 1500 -> '1500': a label's size, in whole KiB where it is one."""
    return "%dk" % (n // 1024) if n % 1024 == 0 else str(n)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_heartbeat(spec: str | None) -> tuple[int, ...]:
    """'100' -> (100,), '100:300' -> (100, 300), '100:300:1000' -> (100, 300, 1000)."""
    if spec is None:
        return ()
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip().isdigit() for p in parts):
        raise OptionError("--heartbeat takes IVL[:TIMEOUT[:TTL]] in whole milliseconds, not %r" % spec)
    return tuple(int(p) for p in parts)


def from_args(args) -> SockOpts:
    """The options of a parsed scenario command line (scenarios/flags.py)."""
    return SockOpts(parse_heartbeat(args.heartbeat), args.immediate, args.reconnect_ivl, args.hwm,
                    args.xpub_nodrop, args.sndbuf, args.rcvbuf)
