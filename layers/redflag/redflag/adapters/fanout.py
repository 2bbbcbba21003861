"""Sweeper workers: an asynchronous invoke of the drain function, one per group of shards."""

from __future__ import annotations

import json
from typing import Any

from redflag.adapters import aws


class LambdaDispatcher:
    def __init__(self, function_name: str, client: Any = None) -> None:
        self._function = function_name
        self._client = client  # built at the first dispatch: most runs start no worker

    def dispatch(self, shards: list[int]) -> None:
        if self._client is None:
            self._client = aws.client("lambda")
        self._client.invoke(
            FunctionName=self._function, InvocationType="Event", Payload=json.dumps({"shards": shards}).encode()
        )
