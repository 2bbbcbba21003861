"""What leaves Red Flag over HTTP, against real local sockets: webhook and Slack POSTs."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from redflag.adapters.outbound import Outcome, WebhookPoster, post_json
from redflag_local.standin.receiver import Answer, Receiver

SECRET = b"MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGR0hJSktMTU5P"
PAYLOAD = {"type": "red_flag", "id": '["u1","t","default","1","webhook"]', "user_id": "u1"}


class Recorder:
    """Any request, any method, recorded: where a followed redirect would land."""

    def __init__(self):
        self.requests = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_HEAD = do_PUT = _record

            def log_message(self, *args):
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path="/"):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


# --- issue 15, channel defect 2: a POST never follows a redirect ---------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_signed_webhook_post_is_a_permanent_failure_and_nothing_reaches_the_location(status):
    with Recorder() as elsewhere, Receiver() as endpoint:
        endpoint.answers[:] = [Answer(status, {"Location": elsewhere.url("/collect")})]
        poster = WebhookPoster(endpoint.url("/redflag"), lambda: SECRET, now=lambda: 1_800_000_000)
        outcome = poster.post(PAYLOAD)
        assert elsewhere.requests == []  # no GET with the signature header, no POST either
        assert outcome == Outcome(status, f"Http{status}", transient=False)
        assert len(endpoint.posts) == 1  # and not retried: a redirect is not a passing fault


def test_a_redirected_slack_post_is_a_permanent_failure_too():
    with Recorder() as elsewhere, Receiver() as slack:
        slack.answers[:] = [Answer(302, {"Location": elsewhere.url("/services/other")})]
        outcome = post_json(slack.url("/services/T/B/X"), {"text": "hi"}, sleep=lambda _s: None)
        assert elsewhere.requests == [] and len(slack.posts) == 1
        assert outcome == Outcome(302, "Http302", transient=False)
