"""A local HTTP endpoint on 127.0.0.1 that stands in for what Red Flag POSTs to: Slack's incoming
webhook and the product's in-app webhook. It keeps every POST (path, headers, body) and answers
200, or the statuses it was told to (``answers``: a 429 with ``Retry-After``, a 5xx, a 404 ...).

Used by ``redflag demo`` and ``redflag serve`` (``on_post`` writes each one to the outbox) and by
the tests; the functions reach it over a real socket, exactly as they reach Slack.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1_000_000


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what was answered

    def header(self, name: str, default: str = "") -> str:
        """A request header, by its name in any case (urllib sends ``X-redflag-signature``)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), default)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    def __init__(self, answers: list[Answer] | None = None, on_post: Callable[[Post], None] | None = None) -> None:
        self.posts: list[Post] = []
        self.answers = list(answers or [])  # consumed in order; then 200
        self._on_post = on_post
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                with receiver._lock:
                    answer = receiver.answers.pop(0) if receiver.answers else Answer()
                    post = Post(self.path, dict(self.headers.items()), body, answer.status)
                    receiver.posts.append(post)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
                if receiver._on_post is not None and answer.status < 300:
                    receiver._on_post(post)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="redflag-receiver", daemon=True)

    def url(self, path: str = "/") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def delivered(self, path: str) -> list[Post]:
        """The POSTs to ``path`` that were answered with success."""
        with self._lock:
            return [p for p in self.posts if p.path == path and p.status < 300]
