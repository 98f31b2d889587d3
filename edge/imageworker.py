"""An image worker process's loop, in a module of its own: a worker imports only this and
the `images` package, not the edge (aiohttp, pydantic, the config models)."""

from __future__ import annotations

import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

from images import transform


def serve(conn: Connection) -> None:
    """Transforms, one at a time, until the pipe closes: `(source, spec, limits)` in,
    `(True, Result)` or `(False, exception)` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the edge's; it ends us
    while True:
        try:
            source, spec, limits = conn.recv()
        except EOFError:
            return
        try:
            outcome: tuple[bool, Any] = (True, transform(source, spec, limits))
        except Exception as e:  # ImageError, or a bug: the edge raises it
            outcome = (False, e)
        try:
            conn.send(outcome)
        except (TypeError, AttributeError, pickle.PicklingError):  # an unpicklable error
            conn.send((False, RuntimeError(repr(outcome[1])[:500])))
