"""The email channel's adapter: one raw MIME message through SES v2 (``redflag.services.ports.Deliverer``).

Raw content, because the message carries headers SES's simple content cannot: RFC 8058's
List-Unsubscribe and List-Unsubscribe-Post, and X-RedFlag-Alert (which run it is about). A throttle,
a timeout or a service error is a passing failure (``ChannelFailed``: the record is retried); a refusal
(a rejected address, a bad request) is for good (``Refused``: parked). No exception raised here carries
SES's message (they quote addresses): error codes only.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.channels.base import Alert
from redflag.channels.email import EmailAlert
from redflag.core import mime
from redflag.services.ports import ChannelFailed, Refused


class SesDeliverer:
    def __init__(self, sender: str, configuration_set: str = "", client: Any = None) -> None:
        self._sender = sender
        # every user email goes through the stack's SES configuration set: its event destination
        # hands bounces, complaints, deliveries and clicks to the feedback function
        self._extra = {"ConfigurationSetName": configuration_set} if configuration_set else {}
        self._ses = client or aws.client("sesv2")

    def deliver(self, alert: Alert) -> str | Refused:
        assert isinstance(alert, EmailAlert), "the email channel sends email alerts"
        try:
            raw = mime.build_raw(
                sender=self._sender,
                to_name=alert.to_name,
                to_address=alert.to_address,
                subject=alert.subject,
                text=alert.text,
                html=alert.html,
                alert_ids=mime.alert_id_parts(alert.alert_id),
                extra_headers=_unsubscribe_headers(alert.unsubscribe_url),
            )
        except ValueError:  # the message cannot be written (an address the door should have refused)
            return Refused("Unwritable")
        try:
            out = self._ses.send_email(
                FromEmailAddress=self._sender,
                Destination={"ToAddresses": [alert.to_address]},
                Content={"Raw": {"Data": raw}},
                **self._extra,
            )
        except (ClientError, BotoCoreError) as exc:
            if aws.is_transient(exc):
                raise ChannelFailed(alert.channel, aws.error_code(exc)) from None
            return Refused(aws.error_code(exc))
        return str(out.get("MessageId", ""))


def _unsubscribe_headers(url: str | None) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: the URL is ours (a signed token, URL-safe), nothing user-typed."""
    if not url:
        return {}
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
