"""Delivering alerts: SES v2 for the user's email, SNS for customer success; exactly once per alert.

Every send goes through Powertools idempotency keyed on ``alert_id`` (user, task, instance, run,
channel): a Lambda retry of the same batch, a record delivered twice, or a TTL delete of a timer the
sweeper already flagged cannot send a second message. Each channel has its own key, so an SES
success followed by an SNS failure retries only SNS.

What a failure does:

- **transient** (throttling, timeouts, a service error): nothing is recorded, ``ChannelFailed`` is
  raised, and the stream record is retried; the other channels of the record go ahead regardless;
- **permanent** (the provider refuses this message: a rejected or invalid address, a bad
  parameter, a configuration error): recorded as the alert's result (so never retried, counted
  once), and the alert is *parked* in the dead-letter queue with the error code, for
  ``redflag dlq`` (see docs/operations.md);
- **bookkeeping** after a successful send (the success record cannot be written): the write is
  retried; if it still fails, the send counts as done and the in-progress record blocks any second
  send until it expires at the Lambda's deadline. The one window left is stated in the README
  ("Exactly once, precisely").

No exception raised here carries a provider's message (they quote addresses): codes only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.adapters.observability import logger, metrics
from redflag.adapters.outbound import WebhookPoster
from redflag.channels.messages import Alert, CsAlert, EmailAlert, WebhookAlert, chatbot_message
from redflag.core import mime
from redflag.services.ports import ChannelFailed

SUCCESS_WRITE_ATTEMPTS = 4


class RetryingPersistenceLayer(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB store, with the success record retried: the message is already sent,
    so giving up on the bookkeeping early is what would send it twice."""

    def save_success(self, data: dict[str, Any], result: dict) -> None:
        for attempt in range(SUCCESS_WRITE_ATTEMPTS):
            try:
                super().save_success(data, result)
                return
            except Exception:
                if attempt == SUCCESS_WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 4**attempt)


class AwsDelivery:
    """Sends one alert on its channel; knows nothing about idempotency. Returns the result to keep
    (``sent`` or ``rejected``), raises ChannelFailed for a passing fault."""

    def __init__(
        self,
        sender: str,
        topic_arn: str,
        parked_queue_url: str,
        ses: Any,
        sns: Any,
        sqs: Any,
        webhook: WebhookPoster | None = None,
        cs_format: str = "json",
        configuration_set: str = "",
    ) -> None:
        self._sender = sender
        # every user email goes through the stack's SES configuration set: its event destination
        # hands bounces, complaints, deliveries and clicks to the feedback function
        self._ses_extra = {"ConfigurationSetName": configuration_set} if configuration_set else {}
        self._topic = topic_arn
        self._parked = parked_queue_url
        self._ses, self._sns, self._sqs = ses, sns, sqs
        self._webhook = webhook
        self._cs_format = cs_format

    def deliver(self, alert: Alert, record_id: str | None = None) -> dict[str, str]:
        """``record_id``: the alert's idempotency record, named in a parked message so a replay
        can forget it."""
        if isinstance(alert, WebhookAlert):
            return self._deliver_webhook(alert, record_id)
        try:
            if isinstance(alert, EmailAlert):
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
                out = self._ses.send_email(
                    FromEmailAddress=self._sender,
                    Destination={"ToAddresses": [alert.to_address]},
                    Content={"Raw": {"Data": raw}},
                    **self._ses_extra,
                )
            else:
                assert isinstance(alert, CsAlert)
                body = chatbot_message(alert) if self._cs_format == "chatbot" else alert.message
                out = self._sns.publish(
                    TopicArn=self._topic,
                    Subject=alert.subject,
                    Message=json.dumps(body, ensure_ascii=False),
                    MessageAttributes={
                        k: {"DataType": "String", "StringValue": v} for k, v in alert.attributes.items()
                    },
                )
        except (ClientError, BotoCoreError) as exc:
            code = aws.error_code(exc)
            if aws.is_transient(exc):
                raise ChannelFailed(alert.channel, code) from None
            self.park(alert, code, record_id)
            return {"channel": alert.channel, "status": "rejected", "error": code}
        except ValueError:  # the message cannot be written (an address the door should have refused)
            self.park(alert, "Unwritable", record_id)
            return {"channel": alert.channel, "status": "rejected", "error": "Unwritable"}
        return {"channel": alert.channel, "status": "sent", "message_id": str(out.get("MessageId", ""))}

    def _deliver_webhook(self, alert: WebhookAlert, record_id: str | None) -> dict[str, str]:
        if self._webhook is None:  # no WebhookUrl in this stack: nothing to deliver to
            self.park(alert, "NoWebhookUrl", record_id)
            return {"channel": alert.channel, "status": "rejected", "error": "NoWebhookUrl"}
        outcome = self._webhook.post(alert.payload)
        if outcome.transient:
            raise ChannelFailed(alert.channel, outcome.error or "HttpError")
        if outcome.error is not None:
            self.park(alert, outcome.error, record_id)
            return {"channel": alert.channel, "status": "rejected", "error": outcome.error}
        return {"channel": alert.channel, "status": "sent", "message_id": str(outcome.status)}

    def park(self, alert: Alert, error: str, record_id: str | None = None) -> None:
        """Keep an alert that cannot be delivered, with why: ids and the error code, no content."""
        body = {"kind": "alert_rejected", "channel": alert.channel, "alert": mime.alert_id_parts(alert.alert_id)}
        body |= {"error": error, "record": record_id}
        try:
            self._sqs.send_message(QueueUrl=self._parked, MessageBody=json.dumps(body))
        except (ClientError, BotoCoreError) as exc:
            raise ChannelFailed(alert.channel, f"park:{aws.error_code(exc)}") from None


class IdempotentSender:
    """AlertSender: ``AwsDelivery`` behind Powertools idempotency on ``alert_id``."""

    def __init__(self, delivery: AwsDelivery, table_name: str, dynamodb_client: Any = None) -> None:
        self.config = IdempotencyConfig(event_key_jmespath="alert_id", expires_after_seconds=3 * 86400)
        store = RetryingPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client or aws.client("dynamodb"))
        self._delivery = delivery

        @idempotent_function(data_keyword_argument="key", config=self.config, persistence_store=store)
        def send_once(key: dict[str, str], alert: Alert, done: list[dict[str, str]]) -> dict[str, str]:
            # the id of this alert's idempotency record, so a replay of a parked alert can forget it
            result = delivery.deliver(alert, store._get_hashed_idempotency_key(key))
            done.append(result)
            if result["status"] == "sent":
                metrics.add_metric(name=f"AlertsSent{alert.channel.upper()}", unit="Count", value=1)
            else:
                metrics.add_metric(name=f"AlertsRejected{alert.channel.upper()}", unit="Count", value=1)
                logger.warning(
                    "alert rejected and parked",
                    extra={"alert": mime.alert_id_parts(alert.alert_id), "error": result["error"]},
                )
            return result

        self._send_once = send_once

    def send(self, alert: Alert) -> dict[str, str]:
        done: list[dict[str, str]] = []
        try:
            return self._send_once(key={"alert_id": alert.alert_id}, alert=alert, done=done)
        except IdempotencyAlreadyInProgressError:
            raise ChannelFailed(alert.channel, "InProgress") from None
        except IdempotencyPersistenceLayerError as exc:
            if done:  # sent, but the success record could not be written: never send it again here
                metrics.add_metric(name="AlertBookkeepingFailed", unit="Count", value=1)
                logger.error(
                    "alert sent but not recorded",
                    extra={"alert": mime.alert_id_parts(alert.alert_id), "error": _cause(exc)},
                )
                return done[0]
            raise ChannelFailed(alert.channel, f"idempotency:{_cause(exc)}") from None


def _unsubscribe_headers(url: str | None) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: the URL is ours (a signed token, URL-safe), nothing user-typed."""
    if not url:
        return {}
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or (exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], BaseException) else None)
    return aws.error_code(cause) if isinstance(cause, BaseException) else type(exc).__name__
