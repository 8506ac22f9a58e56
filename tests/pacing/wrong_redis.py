"""A peer on a Redis port that speaks RESP but answers nonsense, from its own thread.

It reads each command (an array of bulk strings, as redis-py sends them) and answers
with `answer` whatever the command: `+OK` to everything, an error, an array of the
wrong arity or of the wrong types. The shared budget must treat each as Redis being
down, never as a reason to refuse mail.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

ANSWERS = {
    "ok": b"+OK\r\n",
    "error": b"-ERR unknown command\r\n",
    "short_array": b"*1\r\n:1\r\n",
    "wrong_types": b"*3\r\n$3\r\nyes\r\n$2\r\nno\r\n$1\r\nx\r\n",
    "nil": b"$-1\r\n",
}


async def _commands(reader: asyncio.StreamReader) -> int:
    """Reads one command; how many it was (0 at the end of the stream)."""
    header = await reader.readline()
    if not header:
        return 0
    if header.startswith(b"*"):
        for _ in range(int(header[1:])):
            length = int((await reader.readline())[1:])
            await reader.readexactly(length + 2)
    return 1


class WrongRedis:
    def __init__(self, answer: str) -> None:
        self._answer = ANSWERS[answer]
        self.commands = 0
        self._clients: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # loopback only
        self.url = f"redis://127.0.0.1:{self._sock.getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while await _commands(reader):
                self.commands += 1
                writer.write(self._answer)
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._clients.discard(task)

    async def _stop(self) -> None:
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    def __enter__(self) -> Self:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=self._sock), self._loop
        ).result(timeout=5)
        self._server = server
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
