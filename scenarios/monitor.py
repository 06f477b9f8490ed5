"""Socket-monitor events for the run's timeline (docs/topology.md).

zmq_socket_monitor (pyzmq: Socket.get_monitor_socket) makes libzmq report what happens to a
socket's connections: CONNECTED, HANDSHAKE_SUCCEEDED, DISCONNECTED, ... over an inproc PAIR.
One collector thread reads every monitor PAIR of the process and stamps each event with
time.time_ns() when it reads it; libzmq puts no time in the event, so a stamp is late by the
collector's wake-up (it polls with POLL_MS and wakes at once when an event is queued; the
longest pass between two polls, is reported as collector_delay_ms).

Sockets are handed over through a queue: the thread that made a socket must call watch()
before connecting (so CONNECTED is not missed); only the collector touches the monitor
PAIRs afterwards (a zmq socket may move between threads, never be used by two at once).
"""
from __future__ import annotations

import os
import queue
import threading
import time

import zmq

from scenarios.timeline import event_name

POLL_MS = 20
SOCKETS_PER_THREAD = 3      # pair's one socket, connected per message, is one socket: fine
EVENTS_PER_SOCKET = 16      # pair connects/disconnects per message: the first ones tell the story


def available():
    """None when this pyzmq/libzmq can monitor sockets, else why not."""
    if zmq.zmq_version_info() < (4,):
        return "libzmq %s has no socket monitor" % zmq.zmq_version()
    if not hasattr(zmq.Socket, "get_monitor_socket"):
        return "pyzmq %s has no get_monitor_socket" % zmq.pyzmq_version()
    return None


def _parse(frames):
    """(event number, value, endpoint) of one monitor message (libzmq 4: 2 frames, the
    first 6 bytes: uint16 event, uint32 value, little endian)."""
    head = frames[0]
    event = int.from_bytes(head[0:2], "little")
    value = int.from_bytes(head[2:6], "little")
    endpoint = frames[1].decode("utf-8", "replace") if len(frames) > 1 else ""
    return event, value, endpoint


class Monitor:
    def __init__(self, side, enabled=True):
        self.side = side
        self.why_not = None if enabled else "off"
        if enabled:
            self.why_not = available()
        self.events = []            # dicts as in the timeline's "events"
        self.dropped = 0
        self.max_pass_ms = 0.0
        self._inbox = queue.Queue()
        self._seen = threading.Condition()
        self._pending = {}              # thread -> monitors handed over, not yet read once
        self._per_thread = {}
        self._count = 0
        self._lock = threading.Lock()
        self._thread = None

    @property
    def on(self):
        return self.why_not is None

    def start(self):
        if self.on:
            self._thread = threading.Thread(target=self._collect, name="monitor", daemon=True)
            self._thread.start()

    def watch(self, sock, thread, side=None, cap=EVENTS_PER_SOCKET):
        """Monitor `sock` (call before connect/bind, from the thread that owns it); keep at
        most `cap` of its events (a bound socket sees every sender's connection)."""
        if not self.on:
            return
        with self._lock:
            n = self._per_thread.get(thread, 0)
            if n >= SOCKETS_PER_THREAD:
                return
            self._per_thread[thread] = n + 1
            self._count += 1
            n = self._count
        try:
            # Our own inproc name: pyzmq's default is built from the socket's FD, which a
            # thread-safe (draft) socket does not have.
            mon = sock.get_monitor_socket(addr="inproc://zmqlab-monitor-%d-%d" % (os.getpid(), n))
        except (zmq.ZMQError, AttributeError) as exc:     # a socket type that refuses it
            self.why_not = "zmq_socket_monitor failed: %s" % exc
            return
        with self._seen:
            self._pending[thread] = self._pending.get(thread, 0) + 1
        self._inbox.put((mon, thread, side or self.side, cap))

    def settle(self, thread, timeout=0.2):
        """Before `thread` closes its sockets: wait (bounded) until the collector has read
        their monitors once. Closing a socket closes its monitor with linger 0, and events
        not read by then are gone (a thread that sends fast and closes lost them all)."""
        if not self.on:
            return
        with self._seen:
            self._seen.wait_for(lambda: not self._pending.get(thread), timeout)

    def _collect(self):
        poller = zmq.Poller()
        owners = {}
        counts = {}
        while True:
            while True:
                try:
                    mon, thread, side, cap = self._inbox.get_nowait()
                except queue.Empty:
                    break
                owners[mon] = (thread, side, cap)
                counts[mon] = 0
                poller.register(mon, zmq.POLLIN)
            ready = dict(poller.poll(POLL_MS)) if owners else (time.sleep(POLL_MS / 1000.0) or {})
            woke = time.monotonic()
            self._read(ready, owners, counts, poller)
            with self._seen:
                for thread, _, _ in owners.values():
                    self._pending[thread] = 0       # registered, and read if anything came
                self._seen.notify_all()
            # An event queued while this pass runs waits for the next poll: the worst such
            # pass is how late a stamp can be, beyond the thread's own wake-up.
            self.max_pass_ms = max(self.max_pass_ms, (time.monotonic() - woke) * 1000.0)

    def _read(self, ready, owners, counts, poller):
        for mon in list(ready):
            try:
                frames = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            stamp = time.time_ns()
            event, value, endpoint = _parse(frames)
            thread, side, cap = owners[mon]
            if event == 0x400:          # MONITOR_STOPPED: its socket closed
                poller.unregister(mon)
                del owners[mon]
                mon.close(0)
                continue
            counts[mon] += 1
            if counts[mon] > cap:
                self.dropped += 1
                continue
            self.events.append({"t_ns": stamp, "side": side, "thread": thread,
                                "event": event_name(event), "endpoint": endpoint, "value": value})

    def snapshot(self):
        """Events so far (the collector may still append; a copy is consistent enough)."""
        return list(self.events)
