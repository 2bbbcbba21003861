"""Where a timer becomes an alert: a stored change that is a red flag is turned into the email and CS
message its rule asks for, each sent exactly once (the sender is idempotent per channel).

The channels of one red flag are sent concurrently and independently: a failure on one never stops
another. If any channel failed for a passing reason, ``ChannelsFailed`` is raised after all of them
were tried, so the stream retries the record, and only the failed channels send on the retry.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from redflag import alerts, timers
from redflag.health import AccountFlag
from redflag.ports import AlertSender, ChannelFailed


class ChannelsFailed(Exception):
    """Some channels of a red flag could not be delivered now; carries channel names and error codes."""

    def __init__(self, failures: list[ChannelFailed]) -> None:
        super().__init__(", ".join(str(f) for f in failures))
        self.failures = failures


class AlertingService:
    def __init__(self, sender: AlertSender, workers: int = 4) -> None:
        self._sender = sender
        self._workers = workers

    def handle_change(
        self, change: str, by_ttl: bool, old: timers.Timer | None, new: timers.Timer | None, now: float
    ) -> list[alerts.Alert]:
        """The alerts a red flag asked for (sent, or already sent before). Raises ChannelsFailed."""
        timer = timers.red_flag(change, by_ttl, old, new)
        if timer is None:
            return []
        return self._send_all(alerts.plan(timer, now))

    def handle_account_flag(self, change: str, flag: AccountFlag | None) -> list[alerts.Alert]:
        """A usage drop written by the weekly check (a new flag item): customer success hears of it."""
        if change != "INSERT" or flag is None:
            return []
        return self._send_all(alerts.plan_account(flag))

    def _send_all(self, planned: list[alerts.Alert]) -> list[alerts.Alert]:
        failures: list[ChannelFailed] = []

        def send(alert: alerts.Alert) -> None:
            try:
                self._sender.send(alert)
            except ChannelFailed as exc:
                failures.append(exc)

        if len(planned) > 1 and self._workers > 1:
            with ThreadPoolExecutor(max_workers=min(self._workers, len(planned))) as pool:
                list(pool.map(send, planned))
        else:
            for alert in planned:
                send(alert)
        if failures:
            raise ChannelsFailed(failures)
        return planned
