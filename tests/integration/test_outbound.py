"""What leaves Red Flag over HTTP, against real local sockets: webhook and Slack POSTs.

A signed webhook POST is verified the way docs/webhooks.md tells a product to, by its own recipes run
as written there: Python with the ``standardwebhooks`` package, Node with the npm ``standardwebhooks``
package (installed into a temporary folder; skipped when node or the npm registry is not there)."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from redflag.adapters.outbound import Outcome, WebhookPoster, message_id, post_json, receiver_secret
from redflag_local.standin.receiver import Answer, Receiver

# the stored secret as the template generates it (64 letters and digits), and another one
SECRET = b"wsoGjKgyeNiv6RikUeHw15efDQ35fJLsiw4pUc1GBupt1QReFRc3zif59TtKLL3Q"
OTHER = b"Xc8pLr2TqM5vWn9BzK4eYh7JdA1sGf6UoN3iRb0ECt8Pk2Hm5Qw9Vy4Sj7Fa1Dg6"
NPM_STANDARDWEBHOOKS = "standardwebhooks@1.3.0"
DOC = Path(__file__).parents[2] / "docs" / "webhooks.md"
PAYLOAD = {"type": "red_flag", "id": '["u1","t","default","1","webhook"]', "user_id": "u1", "label": "café & <b>"}


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


# --- Standard Webhooks: verified by the libraries, with docs/webhooks.md's recipes -------------------


def recipe(language):
    """The verification snippet docs/webhooks.md gives products, as written there."""
    return re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.S).group(1)


def signed_post(secret=SECRET, now=time.time):
    """One webhook POST as WebhookPoster makes it, as a local endpoint received it."""
    with Receiver() as endpoint:
        outcome = WebhookPoster(endpoint.url("/redflag"), lambda: secret, now=now).post(PAYLOAD)
    assert outcome == Outcome(200)
    (post,) = endpoint.posts
    return post


@pytest.fixture(scope="module")
def posts():
    """A genuine POST, the same with its body tampered, one signed with another secret, one from six
    minutes ago: what each verifier is shown."""
    genuine = signed_post()
    tampered = genuine.body.replace(b'"u1"', b'"u2"')
    assert tampered != genuine.body
    return {
        "genuine": (genuine.body, genuine.headers),
        "tampered": (tampered, genuine.headers),
        "other_secret": (genuine.body, signed_post(OTHER).headers),
        "late": (genuine.body, signed_post(now=lambda: time.time() - 360).headers),
    }


def test_the_post_carries_the_standard_webhooks_headers(posts):
    body, headers = posts["genuine"]
    post = {k.lower(): v for k, v in headers.items()}
    assert post["webhook-id"] == message_id(PAYLOAD["id"])
    assert abs(int(post["webhook-timestamp"]) - time.time()) < 30
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", post["webhook-signature"])
    assert post["x-redflag-signature"].startswith(f"t={post['webhook-timestamp']},v1=")  # deprecated, still sent
    assert json.loads(body) == PAYLOAD


def test_standardwebhooks_verifies_the_post_and_refuses_the_rest(posts):
    webhook = Webhook(receiver_secret(SECRET))
    body, headers = posts["genuine"]
    assert webhook.verify(body, headers) == PAYLOAD
    for name in ("tampered", "other_secret", "late"):
        with pytest.raises(WebhookVerificationError):
            webhook.verify(*posts[name])


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("base64") is None, reason="no bash/base64")
def test_the_documented_shell_lines_give_the_receivers_secret():
    fake_aws = f"aws() {{ printf '%s\\n' {SECRET.decode()}; }}\n"  # what the CLI prints for --output text
    script = "set -euo pipefail\n" + fake_aws + recipe("bash")
    env = {"PATH": os.environ["PATH"], "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}
    run = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == receiver_secret(SECRET)
    assert Webhook(run.stdout.strip()).verify(*signed_post_now()) == PAYLOAD


def signed_post_now():
    post = signed_post()
    return post.body, post.headers


def test_the_documented_python_recipe(posts, monkeypatch):
    monkeypatch.setenv("REDFLAG_WEBHOOK_SECRET", receiver_secret(SECRET))
    namespace: dict = {}
    exec(recipe("python"), namespace)
    red_flag_from = namespace["red_flag_from"]
    assert red_flag_from(*posts["genuine"]) == PAYLOAD
    assert [red_flag_from(*posts[name]) for name in ("tampered", "other_secret", "late")] == [None, None, None]


@pytest.fixture(scope="module")
def node_standardwebhooks(tmp_path_factory):
    """A folder with the npm standardwebhooks package installed, or a skip saying why not."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js or npm not installed")
    folder = tmp_path_factory.mktemp("node-receiver")
    (folder / "package.json").write_text('{"private": true}')
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", NPM_STANDARDWEBHOOKS],
            cwd=folder, capture_output=True, timeout=180, check=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm could not install {NPM_STANDARDWEBHOOKS} (registry unreachable?): {type(exc).__name__}")
    return folder


def test_the_documented_node_recipe(posts, node_standardwebhooks):
    cases = {name: {"body": body.decode(), "headers": headers} for name, (body, headers) in posts.items()}
    script = node_standardwebhooks / "verify.js"
    script.write_text(
        recipe("js")
        + """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [name, { body, headers }] of Object.entries(cases)) {
  out[name] = redFlagFrom(Buffer.from(body, "utf8"), headers);
}
console.log(JSON.stringify(out));
"""
    )
    env = {"PATH": os.environ["PATH"], "REDFLAG_WEBHOOK_SECRET": receiver_secret(SECRET)}
    run = subprocess.run(
        ["node", str(script)], input=json.dumps(cases), cwd=node_standardwebhooks, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(run.stdout) == {"genuine": PAYLOAD, "tampered": None, "other_secret": None, "late": None}
