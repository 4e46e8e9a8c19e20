"""Serving the app under uvicorn with limits on slow and numerous clients.

    from ferkit.serve.server import Server, listening_socket, server_config
    sock = listening_socket("127.0.0.1", 8000)  # a taken port: a FerkitError, said plainly
    Server(server_config(app, host="127.0.0.1", port=8000)).run(sockets=[sock])

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for the
headers of a request that trickles in (or never comes): a few hundred such connections
(slowloris) hold a server's sockets. `HeaderTimeout` closes a connection whose request
headers are not complete `header_timeout_s` after it opened or after its last response. The
body is the app's: `create_app(timeout_s=...)` answers 504 when the upload is too slow.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ferkit.errors import FerkitError

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


class Server(uvicorn.Server):
    """uvicorn's server, except that a second Ctrl-C (uvicorn's forced exit, which skips the
    app's shutdown) still ends the app's lifespan: left pending, it is cancelled as the event
    loop closes, and uvicorn logs that as an error with a traceback. Ending it takes
    milliseconds (`create_app`'s lifespan stops its worker pool without waiting).

    And a Ctrl-C always ends `run` with KeyboardInterrupt. uvicorn raises the signals it caught
    again once it has shut down, inside asyncio's runner, which has its own Ctrl-C handler;
    once, under load, a serve ended by two Ctrl-Cs still returned normally (exit 0, no
    "interrupted" line), so `run` raises it itself when a Ctrl-C was caught.
    """

    interrupted = False

    def handle_exit(self, sig: int, frame) -> None:
        self.interrupted = self.interrupted or sig == signal.SIGINT
        super().handle_exit(sig, frame)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        super().run(sockets=sockets)
        if self.interrupted:
            raise KeyboardInterrupt

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        if self.force_exit:
            await self.lifespan.shutdown()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for uvicorn to serve on (`Server.run(sockets=[...])`).

    Binding first, before the model loads, turns the usual mistakes into one line that says
    what to do, where uvicorn would log an OS error and exit with its own code.

    Raises:
        FerkitError: the port is taken or needs privileges, or the host is not this machine's.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise FerkitError(f"--host {host}: not a known address ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise FerkitError(_bind_problem(host, port, exc)) from None
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port} is in use by another program (another ferkit serve?); pass "
            "--port N for another port (--port 0: any free one), or stop that program"
        )
    if exc.errno == errno.EACCES:
        return (
            f"port {port} needs administrator rights on this system; pass --port N with N "
            "above 1023 (--port 0: any free one)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine; pass one it has, e.g. 127.0.0.1"
    return f"cannot listen on {host}:{port}: {exc.strerror}"
