"""Serving the app under uvicorn with limits on slow and numerous clients.

    from ferkit.serve.server import server_config
    uvicorn.Server(server_config(app, host="127.0.0.1", port=8000)).run()

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for the
headers of a request that trickles in (or never comes): a few hundred such connections
(slowloris) hold a server's sockets. `HeaderTimeout` closes a connection whose request
headers are not complete `header_timeout_s` after it opened or after its last response. The
body is the app's: `create_app(timeout_s=...)` answers 504 when the upload is too slow.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0  # from connecting (or the last response) to complete request headers
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this (uvicorn's default)
MAX_CONNECTIONS = 256  # connections and requests at once; beyond, uvicorn answers 503
MAX_HEADER_BYTES = 64 * 1024  # request line and headers; larger is 400 (h11's limit)


class HeaderTimeout(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections whose request headers are too slow."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            log.info(
                "%s: no complete request headers after %g s; closed",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # the headers are complete: a request started
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers get the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def server_config(
    app,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> uvicorn.Config:
    """uvicorn's config for `app` with ferkit's limits (see the module docstring)."""
    protocol = type("HeaderTimeout", (HeaderTimeout,), {"header_timeout_s": header_timeout_s})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=5,
    )
