"""The demo dataset's fixed clock and timestamp formatting (ISO-8601, UTC)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

Json = dict[str, Any]

#: The dataset's "now": every generated timestamp is at or before it.
NOW = datetime(2026, 3, 14, 9, 21, 7, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """Format as ``2026-03-14T09:21:07Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    """The real current time, for records created at run time."""
    return iso(datetime.now(UTC))


def random_date(rng: random.Random, start: date, end: date) -> date:
    """A date in ``[start, end]``."""
    return start + timedelta(days=rng.randint(0, (end - start).days))


def random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole-second moment in ``[start, end]``."""
    return start + timedelta(seconds=rng.randint(0, int((end - start).total_seconds())))


def at_time(day: date, rng: random.Random, first_hour: int = 7, last_hour: int = 21) -> datetime:
    """A moment on ``day`` during working hours."""
    return datetime(
        day.year, day.month, day.day,
        rng.randint(first_hour, last_hour), rng.randint(0, 59), rng.randint(0, 59), tzinfo=UTC,
    )  # fmt: skip
