"""The customer-success channel's adapter: one message on the alert topic (SNS), as Red Flag's JSON or in
AWS Chatbot's custom format (``CsMessageFormat``), with the alert's attributes as message attributes
(subscribers filter on task, severity, user_id, account_id). Passing failures are ``ChannelFailed``,
refusals ``Refused``; error codes only.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.channels.base import Alert
from redflag.channels.cs import CsAlert, chatbot_message
from redflag.services.ports import ChannelFailed, Refused


class SnsDeliverer:
    def __init__(self, topic_arn: str, message_format: str = "json", client: Any = None) -> None:
        self._topic = topic_arn
        self._format = message_format
        self._sns = client or aws.client("sns")

    def deliver(self, alert: Alert) -> str | Refused:
        assert isinstance(alert, CsAlert), "the cs channel publishes CS alerts"
        body = chatbot_message(alert) if self._format == "chatbot" else alert.message
        try:
            out = self._sns.publish(
                TopicArn=self._topic,
                Subject=alert.subject,
                Message=json.dumps(body, ensure_ascii=False),
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in alert.attributes.items()},
            )
        except (ClientError, BotoCoreError) as exc:
            if aws.is_transient(exc):
                raise ChannelFailed(alert.channel, aws.error_code(exc)) from None
            return Refused(aws.error_code(exc))
        return str(out.get("MessageId", ""))
