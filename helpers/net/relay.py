"""The delaying relay behind ``LatencyProxy``: every byte held half a round trip each way.

``python -m helpers.net.relay --upstream HOST:PORT --round-trip-ms 20`` listens on a free port
of 127.0.0.1, prints ``{"event": "ready", "port": N}`` and forwards each connection to
HOST:PORT. Each direction of each connection is a delay line: bytes read at time t are
written at t + round_trip / 2, in the order read, all of them (reading pauses while a
direction holds more than ``MAX_HELD_BYTES``, as a full TCP window would). A side that
closes has its peer closed once the bytes it sent before closing are delivered; a side
that is reset has its peer reset at that time, so a cut stream never looks complete. With
``--exit-with-parent`` it exits when stdin closes. ``helpers.net.proxy`` starts and owns it.

One asyncio loop on ``select()`` (in its own process; ``epoll`` in a thread) serves every
connection: at 0 ms a chunk goes straight through (one read, one write); otherwise one
timer per direction is armed for the oldest held chunk, and everything due by then leaves
in one write.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import selectors
import socket
import struct
import sys
from typing import Callable

from helpers.settings import PROXY_MAX_HELD_BYTES

#: Most bytes one direction of one connection holds (delayed or unsent) before the relay
#: stops reading from its source (``settings.PROXY_MAX_HELD_BYTES``).
MAX_HELD_BYTES = PROXY_MAX_HELD_BYTES
#: A timer fires late by the time the machine takes to wake the loop (~0.1-0.2 ms here).
#: The relay learns that lateness (a moving average, capped here) and arms timers that
#: much early, so bytes leave on time on average rather than one wake-up late.
MAX_EARLY_S = 0.5e-3
#: Bytes due within this many seconds of each other leave in one write.
FLUSH_SLACK_S = 50e-6
#: Fed in place of bytes when a side's connection was reset rather than closed.
RESET = object()
#: A round trip above this is refused: AMQP handshakes and heartbeats would time out.
MAX_ROUND_TRIP_MS = 10_000.0


class _Direction:
    """The bytes read from one side, written to the other side ``delay_s`` later, in order."""

    def __init__(self, server: "_Server"):
        self.server, self.loop, self.delay_s = server, server.loop, server.delay_s
        self.source = self.sink = None  # transports; sink is None until upstream connects
        self.held: collections.deque = collections.deque()  # (due, bytes, or None = closed)
        self.held_bytes = 0
        self.timer = None
        self.sink_full = self.reading_paused = self.ended = False
        self.reset = False  # the source was reset: the sink is reset too, not closed

    def feed(self, data: bytes | None | object) -> None:
        """Take bytes read from the source (``None``: it closed; ``RESET``: it was reset)."""
        if self.ended:
            return
        self.ended = data is None or data is RESET
        if data is RESET:
            data = None
            self.reset = True
        if not self.delay_s and not self.held and self.sink is not None:
            self._write([data])  # nothing to wait for: straight through, no queue
            return
        self.held.append((self.loop.time() + self.delay_s, data))
        self.held_bytes += len(data or b"")
        if self.timer is None and self.sink is not None:
            self._arm()
        self.throttle()

    def attach_sink(self, sink) -> None:
        self.sink = sink
        if self.held and self.timer is None:
            self._arm()

    def _arm(self) -> None:
        # Wake a little before the head is due, by the loop's usual lateness: on average
        # the bytes then leave on time instead of one wake-up late.
        wake_at = self.held[0][0] - self.server.early_s
        self.timer = self.loop.call_at(wake_at, self._flush, wake_at)

    def _flush(self, wake_at: float) -> None:
        self.timer = None
        now = self.loop.time()
        early_s = self.server.learn_lateness(now - wake_at)
        due_by = now + early_s + FLUSH_SLACK_S
        batch = []
        while self.held and self.held[0][0] <= due_by:
            data = self.held.popleft()[1]
            self.held_bytes -= len(data or b"")
            batch.append(data)
        self._write(batch)
        if self.held and self.sink is not None:
            self._arm()
        self.throttle()

    def _write(self, batch: list) -> None:
        if self.sink is None or self.sink.is_closing():
            return  # the other side is gone: nothing left to deliver to
        closed = batch and batch[-1] is None
        data = batch[:-1] if closed else batch
        if data:
            self.sink.write(data[0] if len(data) == 1 else b"".join(data))
        if closed and self.reset:
            _reset(self.sink)  # a reset passes on as a reset: the peer must not see a clean end
        elif closed:
            self.sink.close()  # sends what is buffered first, then FIN

    def throttle(self) -> None:
        """Pause the source while too much is held or the sink cannot take more."""
        pause = self.sink_full or self.held_bytes > MAX_HELD_BYTES
        if self.source is None or pause == self.reading_paused or self.source.is_closing():
            return
        self.reading_paused = pause
        (self.source.pause_reading if pause else self.source.resume_reading)()

    def abort(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for transport in (self.source, self.sink):
            if transport is not None:
                transport.abort()


def _reset(transport) -> None:
    """Close ``transport`` with a TCP reset (RST), not a clean end (FIN)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Side(asyncio.Protocol):
    """One end of a proxied connection: 0 the client's, 1 the broker's."""

    def __init__(self, link: "_Link", index: int):
        self.link, self.index = link, index
        self.out = link.directions[index]       # what this side sends
        self.into = link.directions[1 - index]  # what is written to this side

    def connection_made(self, transport) -> None:
        self.out.source = transport
        self.into.attach_sink(transport)
        self.link.opened += 1
        self.link.server.links.add(self.link)
        if self.index == 0:
            self.link.connecting = self.link.server.loop.create_task(self.link.connect_upstream())

    def data_received(self, data: bytes) -> None:
        self.out.feed(data)

    def eof_received(self) -> bool:
        self.out.feed(None)
        return False  # let the transport close this side; the close goes on delayed

    def connection_lost(self, exc) -> None:
        self.out.feed(None if exc is None else RESET)
        self.link.closed += 1  # (an upstream still connecting goes on: it gets the bytes)
        if self.link.closed == self.link.opened:
            self.link.server.links.discard(self.link)

    def pause_writing(self) -> None:
        self.into.sink_full = True
        self.into.throttle()

    def resume_writing(self) -> None:
        self.into.sink_full = False
        self.into.throttle()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, server: "_Server"):
        self.server, self.connecting = server, None  # (a task needs a reference held)
        self.opened = self.closed = 0  # sides connected, sides closed since
        self.directions = [_Direction(server), _Direction(server)]
        self.sides = [_Side(self, 0), _Side(self, 1)]

    async def connect_upstream(self) -> None:
        try:
            await self.server.loop.create_connection(lambda: self.sides[1], *self.server.upstream)
        except OSError:  # the broker is unreachable, or reset the connection at once
            _reset(self.directions[1].sink)


class _Server:
    """The listening socket and every live link; ``delay_s`` is the one-way delay."""

    def __init__(self, loop, upstream: tuple[str, int], delay_s: float):
        self.loop, self.upstream, self.delay_s = loop, upstream, delay_s
        self.links: set[_Link] = set()
        self.server = None
        self.early_s = 0.0  # how much before a due time timers are set (learned)

    def learn_lateness(self, late_s: float) -> float:
        """Fold one timer's lateness into ``early_s`` (a moving average, capped); return it."""
        self.early_s = min(MAX_EARLY_S, max(0.0, 0.9 * self.early_s + 0.1 * late_s))
        return self.early_s

    async def open(self, port: int = 0) -> int:
        self.server = await self.loop.create_server(lambda: _Link(self).sides[0],
                                                    "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop listening and cut every connection (both sides)."""
        if self.server is not None:
            self.server.close()
        for link in list(self.links):
            for direction in link.directions:
                direction.abort()
        self.links.clear()


def serve(upstream: tuple[str, int], round_trip_ms: float, on_ready: Callable[[int], object],
          port: int = 0, stop_fd: int | None = None, precise_timers: bool = True) -> None:
    """Relay 127.0.0.1:``port`` to ``upstream`` until ``stop_fd`` reads EOF; ``on_ready(port)``."""
    # select() sleeps to the microsecond; epoll and poll round each timer up to the next
    # millisecond, up to 2 ms more per round trip. select() only takes descriptors below
    # 1024: right for a relay process of its own (a few per worker), wrong in a thread of a
    # process that may hold many (precise_timers=False there).
    selector = selectors.SelectSelector() if precise_timers else selectors.DefaultSelector()
    loop = asyncio.SelectorEventLoop(selector)
    server = _Server(loop, upstream, round_trip_ms / 2000)

    def on_stop_fd() -> None:
        if not os.read(stop_fd, 4096):  # EOF: the owner is gone or asked us to stop
            loop.remove_reader(stop_fd)
            loop.stop()

    try:
        on_ready(loop.run_until_complete(server.open(port)))
        if stop_fd is not None:
            loop.add_reader(stop_fd, on_stop_fd)
        loop.run_forever()
    finally:
        if stop_fd is not None:
            loop.remove_reader(stop_fd)
        server.close()
        loop.run_until_complete(asyncio.sleep(0.01))  # let the aborts close their sockets
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.net.relay``: print one JSON line with the port, serve."""
    p = argparse.ArgumentParser(prog="python -m helpers.net.relay",
                                description="Forward 127.0.0.1:PORT to UPSTREAM, delayed.")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the broker")
    p.add_argument("--round-trip-ms", type=float, default=0.0, help="added round trip (ms)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    p.add_argument("--exit-with-parent", action="store_true", help="exit when stdin closes")
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    if not (math.isfinite(args.round_trip_ms) and 0 <= args.round_trip_ms <= MAX_ROUND_TRIP_MS):
        print(f"error: --round-trip-ms must be 0 to {MAX_ROUND_TRIP_MS:.0f}", file=sys.stderr)
        return 2
    upstream = (host.strip("[]") or "localhost", int(port))

    def ready(listening: int) -> None:
        print(json.dumps({"event": "ready", "port": listening}), flush=True)

    try:
        serve(upstream, args.round_trip_ms, ready, args.port, 0 if args.exit_with_parent else None)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
