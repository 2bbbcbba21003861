"""Alerts that cannot be delivered are kept in the dead-letter queue (SQS), with why: ids and an error
code, never their content (``redflag.services.ports.Parking``). ``redflag dlq`` lists and replays them
(docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.channels.base import Alert
from redflag.services.ports import ChannelFailed


class SqsParking:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._queue = queue_url
        self._client = client

    def park(self, alert: Alert, error: str, record_id: str) -> None:
        self.send(alert.parked(error, record_id), alert.channel)

    def send(self, body: dict[str, Any], channel: str) -> None:
        """Put one message in the queue; ChannelFailed when even that fails (the record is retried)."""
        sqs = self._client or aws.client("sqs")  # built on first use: most invocations park nothing
        try:
            sqs.send_message(QueueUrl=self._queue, MessageBody=json.dumps(body))
        except (ClientError, BotoCoreError) as exc:
            raise ChannelFailed(channel, f"park:{aws.error_code(exc)}") from None
