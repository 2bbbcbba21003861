"""Sweeper workers: an asynchronous invoke of the sweeper itself, one per group of shards."""

from __future__ import annotations

import json
from typing import Any


class LambdaDispatcher:
    def __init__(self, function_name: str, client: Any) -> None:
        self._function = function_name
        self._client = client

    def dispatch(self, shards: list[int]) -> None:
        self._client.invoke(
            FunctionName=self._function, InvocationType="Event", Payload=json.dumps({"shards": shards}).encode()
        )
