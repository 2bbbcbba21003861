"""The Slack channel's adapter: one POST of the Block Kit message to Slack's incoming webhook, whose URL is
a secret (anyone holding it can post to the channel), kept in an SSM SecureString and read at first use
(``redflag.adapters.secrets.SecureString``). ``redflag.adapters.outbound.post_json`` retries a 429 or a
5xx in the call, waiting ``Retry-After`` when Slack says (up to 10 s); past that it is a passing
failure; any other answer (400 ``invalid_payload``, 403, 404 ``no_service``, 410
``channel_is_archived``, a redirect) a refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redflag.adapters.outbound import Outcome, post_json
from redflag.channels.base import Alert
from redflag.channels.slack import SlackAlert
from redflag.services.ports import ChannelFailed, Refused

Post = Callable[[str, dict[str, Any]], Outcome]


class SlackDeliverer:
    def __init__(self, url: Callable[[], str], post: Post = post_json) -> None:
        self._url = url
        self._post = post

    def deliver(self, alert: Alert) -> str | Refused:
        assert isinstance(alert, SlackAlert), "the slack channel posts Slack messages"
        outcome = self._post(self._url(), alert.payload)
        if outcome.transient:
            raise ChannelFailed(alert.channel, outcome.error or "NoAnswer")
        if outcome.error is not None:
            return Refused(outcome.error)
        return str(outcome.status)
