"""The channels a red flag goes out on, one module each, found through ``REGISTRY``: nothing outside a
channel's module branches on its name. Adding a channel: docs/extending.md.

    user     channels/email.py    the user's email (SES)
    cs       channels/cs.py       customer success: the alert topic (SNS)
    webhook  channels/webhook.py  the product's signed webhook (in-app guidance)
    slack    channels/slack.py    customer success in Slack: each CS alert, posted by the notifier

A rule's ``notify`` names the first three; Slack hears what customer success hears.
"""

from __future__ import annotations

from typing import Any

from redflag.channels import cs, email, slack, webhook
from redflag.channels.base import Alert, Channel, Context, RedFlag

REGISTRY: dict[str, Channel] = {c.name: c for c in (email.CHANNEL, cs.CHANNEL, webhook.CHANNEL)}
DOWNSTREAM: dict[str, Any] = {slack.CHANNEL.name: slack.CHANNEL}  # fed by a channel above, not by a rule


def plan(flag: RedFlag[Any], ctx: Context) -> list[Alert]:
    """The alerts one red flag produces: one per channel it goes to (by the rule snapshot taken when
    the timer was armed), in the registry's order; a channel with nothing to send (no address) none."""
    wanted = set(flag.kind.recipients(flag.subject))
    return [alert for name, channel in REGISTRY.items() if name in wanted if (alert := channel.compose(flag, ctx))]


__all__ = ["DOWNSTREAM", "REGISTRY", "Alert", "Channel", "Context", "RedFlag", "plan"]
