"""Delivering alerts: SES v2 for the user's email, SNS for customer success.

Exactly once per alert: every send goes through Powertools idempotency keyed on ``alert_id``
(user, task, instance, run, channel). A Lambda retry of the same batch, a record delivered twice,
or a TTL delete of a timer the sweeper already flagged cannot send a second message: the first
completed send is recorded, an in-flight one makes the duplicate fail and retry later. Each
channel has its own key, so an SES success followed by an SNS failure retries only SNS.
"""

from __future__ import annotations

import json
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote

import boto3
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from redflag.alerts import Alert, CsAlert, EmailAlert
from redflag.observability import logger, metrics


def build_mime(alert: EmailAlert, sender: str, reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    # Address() rejects CR/LF and quotes the display name: no header injection from a user's name
    msg["To"] = Address(display_name=alert.to_name or "", addr_spec=alert.to_address)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = alert.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">"))
    # which run this is, for tracing and dedupe downstream: quoted parts, so nothing a user typed
    # can end the header
    msg["X-RedFlag-Alert"] = "/".join(quote(str(part), safe="") for part in json.loads(alert.alert_id))
    msg.set_content(alert.text)
    msg.add_alternative(alert.html, subtype="html")
    return msg.as_bytes()


class AwsDelivery:
    """Sends one alert on its channel; knows nothing about idempotency."""

    def __init__(self, sender: str, topic_arn: str, ses: Any = None, sns: Any = None) -> None:
        self._sender = sender
        self._topic = topic_arn
        self._ses = ses or boto3.client("sesv2")
        self._sns = sns or boto3.client("sns")

    def deliver(self, alert: Alert) -> dict[str, str]:
        if isinstance(alert, EmailAlert):
            out = self._ses.send_email(
                FromEmailAddress=self._sender,
                Destination={"ToAddresses": [alert.to_address]},
                Content={"Raw": {"Data": build_mime(alert, self._sender)}},
            )
            return {"channel": "user", "message_id": out.get("MessageId", "")}
        assert isinstance(alert, CsAlert)
        out = self._sns.publish(
            TopicArn=self._topic,
            Subject=alert.subject,
            Message=json.dumps(alert.message, ensure_ascii=False),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in alert.attributes.items()},
        )
        return {"channel": "cs", "message_id": out.get("MessageId", "")}


class IdempotentSender:
    """AlertSender: ``AwsDelivery`` behind Powertools idempotency on ``alert_id``."""

    def __init__(self, delivery: AwsDelivery, table_name: str, dynamodb_client: Any = None) -> None:
        self.config = IdempotencyConfig(event_key_jmespath="alert_id", expires_after_seconds=3 * 86400)
        store = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)

        @idempotent_function(data_keyword_argument="alert", config=self.config, persistence_store=store)
        def send_once(alert: dict[str, Any]) -> dict[str, str]:
            parsed: Alert = (
                EmailAlert.model_validate(alert) if alert["channel"] == "user" else CsAlert.model_validate(alert)
            )
            result = delivery.deliver(parsed)
            logger.info("alert sent", extra={"channel": result["channel"], "message_id": result["message_id"]})
            metrics.add_metric(name=f"AlertsSent{parsed.channel.upper()}", unit="Count", value=1)
            return result

        self._send_once = send_once

    def send(self, alert: Alert) -> None:
        self._send_once(alert=alert.model_dump())
