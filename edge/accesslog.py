"""The access log: one JSON object per line, written in batches.

A `logging` handler writes (and flushes) once per record, which is a system call per
request; this buffer writes at most every `interval` seconds or every `max_bytes`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO, Any

import orjson


class AccessLog:
    def __init__(self, stream: IO[bytes] | None = None, *, interval: float = 0.25,
                 max_bytes: int = 64 * 1024) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.interval, self.max_bytes = interval, max_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, line: dict[str, Any]) -> None:
        data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        self._lines.append(data)
        self._size += len(data)
        if self._size >= self.max_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not take requests down with it

    def close(self) -> None:
        self.flush()
