"""Shared by the benchmark's server scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import asyncio


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (as the edge uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
