"""The webhook channel's adapter: the alert's payload POSTed to the product, signed
(``redflag.adapters.outbound.WebhookPoster``; docs/webhooks.md). A 408, 429 or 5xx past the poster's
own retries, or no answer, is a passing failure (the record is retried); any other answer is a
refusal (parked, with the status). A stack without ``WebhookUrl`` refuses every webhook alert
(``NoWebhookUrl``), so the rule's author sees them parked.
"""

from __future__ import annotations

from redflag.adapters.outbound import WebhookPoster
from redflag.channels.base import Alert
from redflag.channels.webhook import WebhookAlert
from redflag.services.ports import ChannelFailed, Refused


class WebhookDeliverer:
    def __init__(self, poster: WebhookPoster | None) -> None:
        self._poster = poster

    def deliver(self, alert: Alert) -> str | Refused:
        assert isinstance(alert, WebhookAlert), "the webhook channel posts webhook alerts"
        if self._poster is None:  # no WebhookUrl in this stack: nothing to deliver to
            return Refused("NoWebhookUrl")
        outcome = self._poster.post(alert.payload)
        if outcome.transient:
            raise ChannelFailed(alert.channel, outcome.error or "HttpError")
        if outcome.error is not None:
            return Refused(outcome.error)
        return str(outcome.status)
