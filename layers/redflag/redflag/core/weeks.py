"""Days and ISO weeks in UTC: how account activity is bucketed. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def day_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def week_of(epoch: float) -> str:
    year, week, _ = datetime.fromtimestamp(epoch, UTC).isocalendar()
    return f"{year}-W{week:02d}"


def weeks_before(epoch: float, n: int) -> str:
    return week_of((datetime.fromtimestamp(epoch, UTC) - timedelta(weeks=n)).timestamp())


def week_start(epoch: float) -> float:
    """Monday 00:00 UTC of the week ``epoch`` falls in."""
    day = datetime.fromtimestamp(epoch, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day - timedelta(days=day.weekday())).timestamp()
