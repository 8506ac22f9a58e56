"""An aiohttp application served from its own thread and event loop.

Synchronous tests (smtplib), async tests on pytest's loop and a proxy running in a
subprocess must all reach the fakes, so the fakes never share the caller's loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

# Large enough for a 40 MiB raw message in v2's base64 JSON (~53.4 MiB); v1's 10 MiB,
# base64-encoded then form-encoded, is ~14 MiB.
MAX_REQUEST_BYTES = 64 * 1024 * 1024


class BackgroundServer:
    """Subclasses provide `_make_app`; this class owns the thread, loop and socket."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._port = port
        self._tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    def _make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return self._bound_port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))  # loopback only
        self._bound_port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            # No access log: requests carry signatures and tokens in headers.
            runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=self._tls).start()
            self._runner = runner

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                sock.close()
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} failed to start") from failure[0]

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
