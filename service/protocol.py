"""uvicorn's HTTP protocol with a read deadline: slow and silent clients are cut off.

uvicorn times out idle keep-alive connections, but not a connection that has not yet sent its first request,
nor one that started a request and then trickles (or stops sending) its headers or body: 100 such
connections stay open for ever. Here each request, headers and body, must arrive within `READ_TIMEOUT_S` of
its first byte (a new connection: of connecting); otherwise the connection is closed. A request whose body was
cut off reaches the app as a disconnect, which the service counts as cancelled.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    # READ_TIMEOUT_S, set by create_app in the process that serves (uvicorn builds one instance per connection
    # from the class, so a class attribute is how a setting reaches it, in a spawned worker too).
    read_timeout_s = 10.0
    read_deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.read_deadline is None:  # the first byte of a request on a kept-alive connection
            self.arm()

    def on_message_complete(self) -> None:
        self.disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def arm(self) -> None:
        self.read_deadline = self.loop.call_later(self.read_timeout_s, self.read_timed_out)

    def disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def read_timed_out(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

