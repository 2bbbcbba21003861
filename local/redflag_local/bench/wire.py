"""The bench's view of the wire: every AWS call the handlers make, counted, recorded, or answered
without moto after a fixed delay.

moto answers every call in this process through one botocore stubber (``before-send``), which
``redflag_local.standin.stack`` already wraps to inject faults. ``Wire`` wraps it once more, for the
length of a ``with`` block:

- ``count``: calls go to moto, as always, and are counted per (service, operation); each HTTP
  attempt counts, as AWS bills it (SDK retries included);
- ``record``: the same, and each answer is kept, keyed by the request;
- ``replay``: no call reaches moto. Each is answered with a recorded answer (the same request's,
  else the last one of that operation) or by a ``responder``, after sleeping ``delay`` seconds
  (a sleep, like network I/O, lets the other threads run).

moto serves a call in a few ms of CPU, in this process, holding the GIL: a real AWS call costs
the client nothing while it waits. Replay takes moto's time out and puts a fixed server time in,
so what is measured is the client's own CPU (the handler, pydantic, botocore building and parsing
each call) plus the injected server time, at the concurrency the functions really use (moto is not
thread-safe, so while counting or recording, calls reach it one at a time under a lock).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body
Responder = Callable[[dict[str, Any]], Answer | None]  # a JSON request body -> an answer (None: not mine)


def _body(request: Any) -> bytes:
    body = request.body or b""
    if isinstance(body, str):
        return body.encode()
    return bytes(body) if isinstance(body, bytes | bytearray) else b""


@dataclass
class Wire:
    mode: str = "count"  # count | record | replay
    delay: float = 0.0  # replay: seconds of server time per call
    calls: Counter = field(default_factory=Counter)  # (service, operation) -> calls
    bodies: list[tuple[str, str, bytes]] = field(default_factory=list)  # count/record: what was sent
    keep_bodies: bool = False
    recorded: dict[tuple[str, str, bytes], list[Answer]] = field(default_factory=lambda: defaultdict(list))
    last: dict[tuple[str, str], Answer] = field(default_factory=dict)
    responders: dict[tuple[str, str], Responder] = field(default_factory=dict)
    server_seconds: float = 0.0  # count/record: time spent inside moto
    unanswered: Counter = field(default_factory=Counter)  # replay: calls nothing could answer (went to moto)
    observers: list[Callable[[str, str, bytes], None]] = field(default_factory=list)  # see every call first

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: Counter = Counter()

    def reset(self) -> None:
        """Forget the counts, and replay recorded answers from the first again."""
        self.calls.clear()
        self.bodies.clear()
        self.server_seconds = 0.0
        self.unanswered.clear()
        self._cursor.clear()

    # --- the stubber's wrapper ---------------------------------------------------------------

    def handle(self, stubber: BotocoreStubber, inner: Callable[..., Any], event_name: str, request: Any, **kw: Any):
        if not stubber.enabled:
            return inner(stubber, event_name, request, **kw)
        _, service, operation = [*event_name.split("."), "", "", ""][:3]
        body = _body(request)
        with self._lock:
            self.calls[(service, operation)] += 1
            if self.keep_bodies:
                self.bodies.append((service, operation, body))
            for observe in self.observers:
                observe(service, operation, body)
        responder = self.responders.get((service, operation))
        if self.mode != "replay" and responder is not None:  # a stand-in answers, moto's state unchanged
            answer = responder(json.loads(body or b"{}"))
            if answer is not None:
                status, headers, content = answer
                return AWSResponse(request.url, status, dict(headers), MockRawResponse(content))  # type: ignore[arg-type]
        if self.mode == "replay":
            answer = self._answer(service, operation, body)
            if answer is not None:
                if self.delay > 0:
                    time.sleep(self.delay)
                status, headers, content = answer
                return AWSResponse(request.url, status, dict(headers), MockRawResponse(content))  # type: ignore[arg-type]
            with self._lock:
                self.unanswered[(service, operation)] += 1
        with self._lock:  # moto: one call at a time
            began = time.perf_counter()
            response = inner(stubber, event_name, request, **kw)
            self.server_seconds += time.perf_counter() - began
            if self.mode == "record" and response is not None:
                answer = (response.status_code, dict(response.headers), response.content)
                self.recorded[(service, operation, body)].append(answer)
                self.last[(service, operation)] = answer
        return response

    def _answer(self, service: str, operation: str, body: bytes) -> Answer | None:
        responder = self.responders.get((service, operation))
        if responder is not None:
            answer = responder(json.loads(body or b"{}"))
            if answer is not None:
                return answer
        with self._lock:
            key = (service, operation, body)
            answers = self.recorded.get(key)
            if answers:  # the same request answered differently over time: in that order, the last sticks
                self._cursor[key] += 1
                return answers[min(self._cursor[key], len(answers)) - 1]
            return self.last.get((service, operation))


@contextmanager
def wire(w: Wire) -> Iterator[Wire]:
    """Route every AWS call of this process through ``w`` for the block."""
    inner = BotocoreStubber.__call__

    def call(self: BotocoreStubber, event_name: str, request: Any, **kw: Any) -> Any:
        return w.handle(self, inner, event_name, request, **kw)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield w
    finally:
        BotocoreStubber.__call__ = inner  # type: ignore[method-assign]


def json_answer(payload: dict[str, Any], status: int = 200) -> Answer:
    return status, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(payload).encode()
