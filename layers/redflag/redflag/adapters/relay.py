"""Posting CS alerts to Slack: one incoming-webhook POST per SNS message, exactly once.

The webhook URL is a secret (anyone holding it can post to the channel): it lives in an SSM
SecureString whose *name* is the function's setting (``secrets.SecureString``), read at first use and
cached by Powertools.

- Each post goes through Powertools idempotency keyed on the SNS message id: SNS delivering the same
  message twice, or Lambda retrying an invocation whose post went through, posts once.
- A 429 or a 5xx is retried in the call with backoff, waiting ``Retry-After`` when Slack says (up to
  10 s); past that, ``SlackUnavailable`` is raised and Lambda retries the invocation (twice, a minute
  or two apart), then parks it in the dead-letter queue (the function's on-failure destination).
- Any other refusal (400 ``invalid_payload``, 403, 404 ``no_service``, 410 ``channel_is_archived``)
  will not get better by retrying: the message is parked at once with the status, counted, and the
  invocation succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from redflag.adapters import aws
from redflag.adapters.delivery import RetryingPersistenceLayer
from redflag.adapters.observability import logger, metrics
from redflag.adapters.outbound import Outcome, post_json
from redflag.channels import slack

Post = Callable[[str, dict[str, Any]], Outcome]


class SlackUnavailable(Exception):
    """Slack (or the way to it) failed for now; the invocation is retried. Carries a code only."""


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackNotifier:
    def __init__(
        self,
        webhook_url: Callable[[], str],
        table_name: str,
        parked_queue_url: str,
        link_template: str = "",
        post: Post | None = None,
        sqs: Any = None,
        dynamodb_client: Any = None,
    ) -> None:
        self._url = webhook_url
        self._parked = parked_queue_url
        self._link = link_template
        self._post: Post = post or post_json
        self._sqs = sqs
        self.config = IdempotencyConfig(event_key_jmespath="message_id", expires_after_seconds=3 * 86400)
        store = RetryingPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client or aws.client("dynamodb"))

        @idempotent_function(data_keyword_argument="key", config=self.config, persistence_store=store)
        def post_once(key: dict[str, str], payload: dict[str, Any], done: list[int]) -> dict[str, Any]:
            outcome = self._post(self._url(), payload)
            if outcome.transient:
                raise SlackUnavailable(outcome.error or "NoAnswer")
            if outcome.error is not None:
                raise _Refused(outcome.error)  # nothing recorded: a replay after the fix posts
            done.append(outcome.status or 0)
            return {"status": "posted", "http": outcome.status}

        self._post_once = post_once

    def notify(self, record: dict[str, Any]) -> str:
        """One SNS record (as Lambda receives it): ``posted``, ``duplicate`` (posted before) or
        ``rejected`` (parked). Raises ``SlackUnavailable`` for a passing fault."""
        sns = record["Sns"]
        message_id = str(sns["MessageId"])
        try:
            alert = json.loads(sns["Message"])
        except ValueError:
            alert = {"summary": str(sns["Message"])}  # someone published plain text: shown as text
        if not isinstance(alert, dict):
            alert = {"summary": str(alert)}
        payload = slack.message(alert, sns.get("Subject"), self._link)
        done: list[int] = []
        try:
            self._post_once(key={"message_id": message_id}, payload=payload, done=done)
        except _Refused as refused:
            self.park(record, refused.code)
            metrics.add_metric(name="SlackRejected", unit="Count", value=1)
            logger.warning("slack refused the message; parked", extra={"message_id": message_id, "error": refused.code})
            return "rejected"
        except IdempotencyAlreadyInProgressError:
            raise SlackUnavailable("InProgress") from None
        except IdempotencyPersistenceLayerError:
            if not done:
                raise SlackUnavailable("IdempotencyStore") from None
            # posted, but the success record could not be written: never post it again from here
            metrics.add_metric(name="AlertBookkeepingFailed", unit="Count", value=1)
            logger.error("slack post sent but not recorded", extra={"message_id": message_id})
        if not done:  # answered from the idempotency record: posted before
            return "duplicate"
        metrics.add_metric(name="SlackPosts", unit="Count", value=1)
        return "posted"

    def park(self, record: dict[str, Any], error: str) -> None:
        """Keep the message for ``redflag dlq replay``, in the shape of Lambda's on-failure record."""
        body = {
            "kind": "slack_post",
            "error": error,
            "requestContext": {"condition": "Rejected"},
            "requestPayload": {"Records": [record]},
        }
        sqs = self._sqs or aws.client("sqs")
        try:
            sqs.send_message(QueueUrl=self._parked, MessageBody=json.dumps(body))
        except Exception as exc:  # not parked: let Lambda retry the invocation (and its on-failure destination)
            raise SlackUnavailable(f"park:{aws.error_code(exc)}") from None
