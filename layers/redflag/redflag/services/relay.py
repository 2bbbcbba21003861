"""The Slack notifier's service: each CS alert on the alert topic posted to Slack once, as a Block Kit
message (``redflag.channels.slack``), standing on the same send-exactly-once helper as every channel
(``redflag.services.sending``). Pure.

- Each post is claimed on the SNS message id: SNS delivering the same message twice, or Lambda
  retrying an invocation whose post went through, posts once.
- A 429 or a 5xx past the adapter's own retries is a passing failure: the claim is given up and
  ``RelayFailed`` raised, so Lambda retries the invocation (twice, a minute or two apart), then parks it
  (the function's on-failure destination).
- Any other refusal will not get better by retrying: the message is parked at once with the status
  (``redflag dlq replay`` forgets the refusal and posts it again after the fix), and the invocation
  succeeds.
"""

from __future__ import annotations

from typing import Any, Literal

from redflag.channels import slack
from redflag.services.sending import Sender

Relayed = Literal["posted", "duplicate", "rejected"]


class RelayFailed(Exception):
    """Slack (or the way to it, or the claims) failed for now; the invocation is retried. A code only."""


class Relay:
    def __init__(self, sender: Sender, link_template: str = "") -> None:
        self._sender = sender
        self._link = link_template

    def notify(self, record: dict[str, Any], until: float) -> tuple[Relayed, bool]:
        """One SNS record (as Lambda receives it): ``posted``, ``duplicate`` (posted before) or
        ``rejected`` (parked), and whether a post's result could not be kept. ``until``: the
        invocation's deadline (a crashed attempt's claim lapses then). Raises RelayFailed."""
        alert = slack.compose(record, self._link)
        sending = self._sender.send([alert], until)
        sent = sending.sent[alert.alert_id]
        if sent.failure is not None:
            raise RelayFailed(sent.failure.error)
        if not sent.now:
            return "duplicate", False
        return ("rejected" if sent.refused is not None else "posted"), bool(sending.unrecorded)
