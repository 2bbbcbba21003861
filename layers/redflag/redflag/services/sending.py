"""Send exactly once: the one helper every channel stands on (the alerts function's email, CS and webhook
sends, the Slack notifier's posts, the SES feedback function's CS notices). Pure: the claims
(``SendOnce``), each channel's adapter (``Deliverer``) and the parking come in through ports.

For a set of alerts: claim them all (one call per 100), send the new ones concurrently, each on its
own channel's adapter, then keep every result in one batched write. What each alert can come to:

- **sent** now (its provider's message id kept as its result);
- **done** before (claimed and kept by an earlier attempt: nothing is sent again);
- **refused** for good (a bad address, a bad request): parked with its error code (``Parking``), and the
  refusal kept as its result, so it is never retried (``redflag dlq replay`` forgets it first);
- **failed** for now (throttled, unavailable, another attempt still holding its claim): its claim is
  given up, and the caller retries (the stream record, the invocation).

A result that cannot be kept after a send leaves its claim in place: no second send before the claim
lapses at the invocation's deadline (counted as ``unrecorded``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from redflag.channels.base import Alert
from redflag.services.ports import ChannelFailed, Claim, Deliverer, Parking, Refused, SendOnce, StoreUnavailable


@dataclass(frozen=True)
class Sent:
    """What became of one alert."""

    alert: Alert
    result: dict[str, str] | None = None  # the kept result: {"status": "sent" | "rejected", ...}
    now: bool = False  # sent (or refused) by this call, not before
    failure: ChannelFailed | None = None  # failed for now: retry

    @property
    def refused(self) -> str | None:
        """The error code, when the provider refused it for good."""
        return self.result.get("error") if self.result and self.result.get("status") == "rejected" else None


@dataclass
class Sending:
    sent: dict[str, Sent] = field(default_factory=dict)  # alert id -> what became of it
    unrecorded: int = 0  # sent, but the result could not be kept (their claims block a resend)


class Sender:
    def __init__(self, senders: Mapping[str, Deliverer], once: SendOnce, parking: Parking, workers: int = 16) -> None:
        self._senders = senders
        self._once = once
        self._parking = parking
        self._workers = workers

    def send(self, alerts: Sequence[Alert], until: float) -> Sending:
        """Every alert sent exactly once (``until``: the invocation's deadline, when claims lapse)."""
        out = Sending()
        by_id = {a.alert_id: a for a in alerts}
        if not by_id:
            return out
        try:
            claims = self._once.claim(list(by_id), until)
        except StoreUnavailable as exc:
            out.sent = {
                i: Sent(a, failure=ChannelFailed(a.channel, f"idempotency:{exc.code}")) for i, a in by_id.items()
            }
            return out
        new: list[Alert] = []
        for alert_id, (claim, kept) in claims.items():
            alert = by_id[alert_id]
            if claim is Claim.NEW:
                new.append(alert)
            elif claim is Claim.DONE:
                out.sent[alert_id] = Sent(alert, kept)
            else:
                out.sent[alert_id] = Sent(alert, failure=ChannelFailed(alert.channel, "InProgress"))
        if len(new) > 1 and self._workers > 1:
            with ThreadPoolExecutor(max_workers=min(self._workers, len(new))) as pool:
                answers = list(pool.map(self._deliver, new))
        else:
            answers = [self._deliver(a) for a in new]
        results: dict[str, dict[str, str]] = {}
        released: list[str] = []
        for alert, answer in zip(new, answers, strict=True):
            if isinstance(answer, ChannelFailed):
                released.append(alert.alert_id)
                out.sent[alert.alert_id] = Sent(alert, failure=answer)
            else:
                results[alert.alert_id] = answer
                out.sent[alert.alert_id] = Sent(alert, answer, now=True)
        if results:
            try:
                self._once.complete(results)
            except StoreUnavailable:
                out.unrecorded += len(results)
        if released:
            with contextlib.suppress(StoreUnavailable):  # else the claims lapse at the deadline, and a retry sends
                self._once.release(released)
        return out

    def _deliver(self, alert: Alert) -> dict[str, str] | ChannelFailed:
        """One send on its channel's adapter: the result to keep, or the passing failure."""
        try:
            answer = self._senders[alert.channel].deliver(alert)
            if isinstance(answer, Refused):
                self._parking.park(alert, answer.error, self._once.record_id(alert.alert_id))
                return {"channel": alert.channel, "status": "rejected", "error": answer.error}
        except ChannelFailed as exc:
            return exc
        return {"channel": alert.channel, "status": "sent", "message_id": answer}
