"""Quiet hours: a low-level warning met at night may wait for the morning.

Only the levels listed in `[quiet_hours] levels` are deferred (red and orange never are;
config refuses them). Times are read on the configured time zone's wall clock (default
Asia/Shanghai), whatever zone the server runs in; the clock itself is injected.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dispatcher.config import QuietHoursSettings


def _time_of(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def quiet_until(quiet: QuietHoursSettings, level: str, now: datetime) -> datetime | None:
    """When the quiet hours `now` falls in end (UTC), if they apply to `level`; else None."""
    if level not in quiet.levels:
        return None
    start, end = _time_of(quiet.start), _time_of(quiet.end)
    if start == end:
        return None
    local = now.astimezone(ZoneInfo(quiet.timezone))
    at = local.time().replace(tzinfo=None)
    if start > end:  # over midnight, e.g. 22:00 to 07:00
        if at >= start:
            day = local.date() + timedelta(days=1)
        elif at < end:
            day = local.date()
        else:
            return None
    elif start <= at < end:
        day = local.date()
    else:
        return None
    return datetime.combine(day, end, tzinfo=local.tzinfo).astimezone(UTC)


def defer(quiet: QuietHoursSettings, level: str, moment: datetime) -> datetime:
    """`moment`, or the end of the quiet hours it falls in."""
    return quiet_until(quiet, level, moment) or moment
