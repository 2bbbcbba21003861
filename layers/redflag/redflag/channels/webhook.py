"""The webhook channel (``notify: webhook``): the red flag POSTed, signed, to the product, so it can show
in-app guidance. Pure; posted by ``redflag.adapters.outbound`` (docs/webhooks.md: the payload and how
to verify it). The payload is the kind's (``Kind.webhook_payload``): ids and numbers, no address or name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from redflag.channels.base import Alert, AlertChannel, Context, RedFlag


class WebhookAlert(Alert):
    channel: str = "webhook"
    payload: dict[str, Any]


class Webhook(AlertChannel):
    name: ClassVar[str] = "webhook"
    doc: ClassVar[str] = "docs/webhooks.md"

    def compose(self, flag: RedFlag[Any], ctx: Context) -> WebhookAlert | None:
        payload = flag.kind.webhook_payload(flag.subject, ctx.now)
        return None if payload is None else WebhookAlert(alert_id=flag.alert_id(self.name), payload=payload)


CHANNEL = Webhook()
