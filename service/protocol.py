"""uvicorn's HTTP protocol with the limits a connection must keep before the app sees its request.

- A read deadline: each request, headers and body, must arrive within `read_timeout_s` of its first byte (a new
  connection: of connecting), else the connection is closed. uvicorn times out idle keep-alive connections,
  but not one that has not yet sent its first request, nor one that trickles (or stops sending) its headers
  or body. A request whose body was cut off reaches the app as a disconnect, which the service counts as
  cancelled.
- A size and a count for the request line and headers: beyond either, 431 and the connection closed. The
  parser (httptools) keeps no limit of its own and buffers a header whole before handing it over, so two
  counts are kept: the head the parser has handed over (exact, for a head that is complete), and the raw bytes
  received while a head is still incomplete (which bounds what the parser buffers).
- Host (RFC 9112, 3.2): a request with two Host headers, or an HTTP/1.1 request with none, is a 400.
- A keep-alive connection is closed (`Connection: close` on its answer) after `max_requests_per_connection`
  requests, as nginx's keepalive_requests does: clients reconnect, and the kernel spreads the new connections
  over every worker listening, so a replaced or added worker gets its share of a pool that never reconnects
  on its own.

The limits come from the app's lifespan state (`ConnectionLimits` under LIMITS_KEY), which uvicorn hands to
every connection it makes once the app has started.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, NoReturn

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import connection_error_body

LIMITS_KEY = "connection_limits"
REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class ConnectionLimits:
    read_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024  # request line and headers together
    max_header_count: int = 100
    max_requests_per_connection: int = 200  # 0: no limit


class RequestRefused(Exception):
    """A request answered with `status` and the connection closed, before the app sees it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    read_deadline: TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: ConnectionLimits = self.app_state.get(LIMITS_KEY, ConnectionLimits())
        self.refusal: RequestRefused | None = None
        self.head_bytes = 0  # of the request line and headers the parser has handed over
        self.unparsed_bytes = 0  # received since the current head began, while it is incomplete
        self.reading_head = True
        self.requests = 0  # on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm()

    def data_received(self, data: bytes) -> None:
        if self.reading_head:
            self.unparsed_bytes += len(data)
        super().data_received(data)
        if self.reading_head and self.unparsed_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self.refuse(RequestRefused(431, f"request line and headers over {self.limits.max_header_bytes} bytes"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Bytes of this chunk before the new head were counted; those of the head in it are not: an undercount of
        # at most one read, never an overcount.
        self.reading_head, self.head_bytes, self.unparsed_bytes = True, 0, 0
        if self.read_deadline is None:  # the first byte of a request on a kept-alive connection
            self.arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.count(len(name) + len(value) + 4)
        if len(self.headers) > self.limits.max_header_count:
            self.stop(431, f"more than {self.limits.max_header_count} request headers")

    def count(self, size: int) -> None:
        """Bytes of the head the parser has handed over."""
        self.head_bytes += size
        if self.head_bytes > self.limits.max_header_bytes:
            self.stop(431, f"request line and headers over {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self.reading_head = False
        hosts = sum(name == b"host" for name, _ in self.headers)
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            self.stop(400, "an HTTP/1.1 request needs a Host header" if hosts == 0 else "a request may carry only one "
                      "Host header")
        super().on_headers_complete()
        self.requests += 1
        if self.requests == self.limits.max_requests_per_connection and self.cycle is not None:
            self.cycle.keep_alive = False  # uvicorn answers with Connection: close, then closes

    def stop(self, status: int, message: str) -> NoReturn:
        """Stops the parser (an exception from its callback); uvicorn then calls send_400_response."""
        self.refusal = RequestRefused(status, message)
        raise self.refusal

    def on_message_complete(self) -> None:
        self.disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything the parser refused: a refusal of ours keeps its own status and words."""
        self.refuse(self.refusal or RequestRefused(400, msg))

    def refuse(self, refusal: RequestRefused) -> None:
        body = connection_error_body(str(refusal))
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (refusal.status, REASONS.get(refusal.status, b"Bad Request")),
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.transport.close()

    def arm(self) -> None:
        self.read_deadline = self.loop.call_later(self.limits.read_timeout_s, self.read_timed_out)

    def disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def read_timed_out(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
