"""The users API on the deployed template (issue 10): the link in a real email opts the user out in one
click (RFC 8058), a GET only shows the form, forged and expired tokens are refused, the product can opt a
user back in, and erasure leaves nothing of the user but their hashed opt-out. `redflag users` drives
the same handler over HTTP."""

import copy
import json
import os
import threading
import uuid
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from samtranslator.translator.transform import transform
from typer.testing import CliRunner

from redflag.adapters.stats_table import user_hash
from redflag_local.ops.users_cli import app as users_app
from redflag_local.standin.stack import Fault, sample_event
from redflag_local.standin.template import Template, _NoManagedPolicies

KEY = "local-api-key"
DAY = 86400
SAMPLES = {"GET": "get_unsubscribe", "POST": "post_unsubscribe", "PUT": "put_subscription", "DELETE": "delete_user"}


def route(path):
    """(resource, pathParameters) as API Gateway REST matches ``path`` (the user id stays percent-encoded)."""
    if path == "/v1/unsubscribe":
        return path, None
    parts = path.split("/")  # "", v1, users, {user_id}[, subscription]
    if len(parts) == 5 and parts[4] == "subscription":
        return "/v1/users/{user_id}/subscription", {"user_id": parts[3]}
    return "/v1/users/{user_id}", {"user_id": parts[3]}


def proxy(method, path, query=None, body=None, content_type=None):
    """The proxy event API Gateway hands the users function, built from events/users_api/."""
    event = sample_event(f"users_api/{SAMPLES[method]}.json")
    resource, params = route(path)
    event |= {"path": path, "resource": resource, "pathParameters": params, "body": body}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type", None)
    if content_type:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["requestContext"] |= {"requestId": str(uuid.uuid4()), "resourcePath": resource, "httpMethod": method}
    return event


class Answer:
    def __init__(self, out):
        self.status = out["statusCode"]
        raw = out.get("multiValueHeaders") or {k: [v] for k, v in (out.get("headers") or {}).items()}
        self.headers = {k.lower(): v[-1] for k, v in raw.items()}
        self.body = out.get("body") or ""

    def json(self):
        return json.loads(self.body)


def call(stack, method, path, query=None, body=None, content_type=None):
    event = proxy(method, path, query, body, content_type)
    return Answer(stack.invoke(stack.template.function_for("users_api"), event))


def one_click(stack, token):
    """What a mail client does with List-Unsubscribe-Post (RFC 8058)."""
    return call(stack, "POST", "/v1/unsubscribe", {"token": token}, "List-Unsubscribe=One-Click", FORM)


def page(stack, token):
    return call(stack, "GET", "/v1/unsubscribe", {"token": token})


def subscription(stack, user_id, subscribed, email=None):
    body = {"subscribed": subscribed} | ({"email": email} if email else {})
    return call(stack, "PUT", f"/v1/users/{user_id}/subscription", body=json.dumps(body), content_type=JSON)


def erase(stack, user_id):
    return call(stack, "DELETE", f"/v1/users/{user_id}")


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def link_of(message: EmailMessage) -> tuple[str, str]:
    """(the List-Unsubscribe URL, its token) of a sent email, as a mail client reads them."""
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(message["List-Unsubscribe"]).strip()
    assert url.startswith("<") and url.endswith(">")
    url = url[1:-1]
    return url, parse_qs(urlsplit(url).query)["token"][0]


def markers(stack):
    return [i for i in stack.items() if i["pk"].startswith("suppress#")]


def started(user_id, instance, email="ada@example.com", **user):
    return {
        "type": "task_started",
        "task": "create_landing_page",
        "user_id": user_id,
        "instance_id": instance,
        "user": {"email": email} | user,
    }


def red_flag(stack, user_id, instance, email="ada@example.com", **user):
    """Start a task for the user and let it pass the 900 s threshold; the emails and CS alerts it caused."""
    emails, alerts = len(stack.emails()), len(stack.cs_alerts())
    code, out = stack.post_events(started(user_id, instance, email, **user))
    assert code == 202 and out["results"][0]["status"] == "armed", out
    stack.tick(901)
    return stack.emails(since=emails), stack.cs_alerts(since=alerts)


def stats_items(stack):
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=stack.physical["StatsTable"])
    de = TypeDeserializer()
    return [{k: de.deserialize(v) for k, v in raw.items()} for p in pages for raw in p["Items"]]


# --- (a) the link in the real email -------------------------------------------------------------


def test_the_emails_one_click_link_opts_the_user_out_and_a_get_only_shows_the_form(stack):
    (email,), _ = red_flag(stack, "u-ada", "page-1")
    url, token = link_of(email["message"])
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "localapi.execute-api.us-east-1.amazonaws.com",
        "/Prod/v1/unsubscribe",
    )

    shown = page(stack, token)  # a link scanner, or the user clicking the footer link
    assert shown.status == 200 and shown.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="?token=' + token + '">' in shown.body
    assert 'name="List-Unsubscribe" value="One-Click"' in shown.body
    assert shown.headers["referrer-policy"] == "no-referrer" and shown.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in shown.headers["content-security-policy"]
    assert markers(stack) == []  # a GET never unsubscribes

    done = one_click(stack, token)
    assert done.status == 200 and done.headers["content-type"].startswith("text/html")
    assert "unsubscribed" in done.body
    assert len(markers(stack)) == 2  # the user id's and the address's, as keyed hashes
    assert not any(
        "u-ada" in json.dumps(m, default=str) or "ada@" in json.dumps(m, default=str) for m in markers(stack)
    )
    assert one_click(stack, token).status == 200 and len(markers(stack)) == 2  # idempotent

    emails, alerts = red_flag(stack, "u-ada", "page-2")
    assert emails == [] and len(alerts) == 1  # customer success still hears
    assert alerts[0]["message"]["user_id"] == "u-ada"


def test_the_opt_out_covers_the_address_under_another_user_id(stack):
    (email,), _ = red_flag(stack, "u-old-id", "page-1")
    assert one_click(stack, link_of(email["message"])[1]).status == 200
    emails, alerts = red_flag(stack, "u-new-id", "page-1")  # same address, new id: still opted out
    assert emails == [] and len(alerts) == 1


# --- (b) forged, expired, malformed --------------------------------------------------------------


def _one_byte_changed(token):
    i = len(token) // 3  # inside the payload: the signature no longer matches
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forged_expired_or_malformed_token_is_a_403_that_echoes_nothing(stack, method):
    (email,), _ = red_flag(stack, "u-ada", "page-1")
    _, token = link_of(email["message"])
    send = page if method == "GET" else one_click
    hostile = '"><script>alert(1)</script>'
    for bad in [_one_byte_changed(token), token.split(".")[0], hostile, "", "x" * 5000]:
        refused = send(stack, bad)
        assert refused.status == 403 and refused.headers["content-type"].startswith("text/html")
        assert "not valid" in refused.body
        assert (bad or "\0") not in refused.body and "<script>alert" not in refused.body
    assert call(stack, method, "/v1/unsubscribe").status == 403  # no token at all

    stack.clock.advance(180 * DAY + 3600)  # UNSUBSCRIBE_TOKEN_DAYS (180) later
    expired = send(stack, token)
    assert expired.status == 403 and "expired" in expired.body and token not in expired.body
    assert markers(stack) == []


def test_the_public_route_answers_an_html_4xx_for_any_bad_token(stack):
    """Issue 14, defect 4: a token holding a lone surrogate was a 500, and a repeated ``token`` parameter
    a JSON 422 (or 415 under a form's content type) on the HTML route."""
    for method in ("GET", "POST"):
        for token in ("\ud800.AAAA", "a.\ud800"):
            answer = call(stack, method, "/v1/unsubscribe", {"token": token})
            assert answer.status == 403 and answer.headers["content-type"].startswith("text/html"), answer.body
            assert "not valid" in answer.body
        for content_type in (None, FORM, JSON):
            event = proxy(method, "/v1/unsubscribe", {"token": "b"}, "List-Unsubscribe=One-Click", content_type)
            event["multiValueQueryStringParameters"] = {"token": ["a", "b"]}
            answer = Answer(stack.invoke(stack.template.function_for("users_api"), event))
            assert answer.status == 403 and answer.headers["content-type"].startswith("text/html"), answer.body
            assert "not valid" in answer.body and answer.headers["cache-control"] == "no-store"
    assert markers(stack) == []


# --- (c) the product opts a user back in -----------------------------------------------------------


def test_resubscribing_with_the_address_emails_the_user_again(stack):
    (email,), _ = red_flag(stack, "u-ada", "page-1")
    assert one_click(stack, link_of(email["message"])[1]).status == 200
    assert red_flag(stack, "u-ada", "page-2")[0] == []

    answer = subscription(stack, "u-ada", True, "Ada@Example.com")
    assert answer.status == 200
    assert answer.json() == {"user_id": "u-ada", "subscribed": True, "address_included": True}
    assert markers(stack) == []
    assert len(red_flag(stack, "u-ada", "page-3")[0]) == 1

    assert subscription(stack, "u-ada", False).json()["subscribed"] is False  # by id only
    assert len(markers(stack)) == 1
    emails, alerts = red_flag(stack, "u-ada", "page-4")
    assert emails == [] and len(alerts) >= 1


def test_the_subscription_route_checks_what_it_is_sent(stack):
    assert subscription(stack, "u-ada", "yes").status == 422
    bad = call(stack, "PUT", "/v1/users/u-ada/subscription", body='{"subscribed": tr', content_type=JSON)
    assert (bad.status, bad.json()["message"]) == (400, "body: not valid JSON")
    form = call(stack, "PUT", "/v1/users/u-ada/subscription", body="subscribed=true", content_type=FORM)
    assert form.status == 415 and "subscribed" not in form.body
    assert subscription(stack, "u-ada", False, "not-an-address").status == 422
    assert subscription(stack, "%0A", False).status == 422  # a control character is no user id
    assert call(stack, "GET", "/v1/users/u-ada").status == 404
    assert markers(stack) == []


def test_a_json_array_is_refused_not_cut_to_its_first_item(stack):
    """Issue 14, defect 1, on the subscription PUT: ``[a, b]`` was read as ``a`` alone."""
    body = json.dumps([{"subscribed": False}, {"subscribed": True}])
    answer = call(stack, "PUT", "/v1/users/u-ada/subscription", body=body, content_type=JSON)
    assert answer.status == 422, answer.body
    assert answer.json()["message"] == "body: a JSON array; send one JSON object"
    assert markers(stack) == []


def test_its_error_bodies_are_bounded_too(stack):
    """Issue 14, defect 2, on the users API: the first 10 problems and a count."""
    body = json.dumps({"subscribed": False} | {f"k{i:04d}": 0 for i in range(5_000)})
    answer = call(stack, "PUT", "/v1/users/u-ada/subscription", body=body, content_type=JSON)
    assert answer.status == 422 and len(answer.body) < 4_000
    assert (len(answer.json()["errors"]), answer.json()["error_count"]) == (10, 5_000)
    assert answer.json()["message"].endswith("; and 4990 more")


# --- (d) erasure -------------------------------------------------------------------------------


def test_erasure_leaves_only_the_hashed_opt_out_and_the_user_is_never_emailed_again(stack):
    user, account = "u-gone", "acme"
    (email,), _ = red_flag(stack, user, "page-1", account_id=account)  # 08:15 UTC: sent
    code, _ = stack.post_events(
        {"type": "user_active", "task": "create_landing_page", "user_id": user, "user": {"account_id": account}}
    )
    assert code == 202
    stack.tick(60)
    stack.flush_windows()  # the stats function writes the user's day, week and member markers
    member = {"pk": f"member#{account}", "sk": user_hash(account, user)}
    assert any(i["pk"] == member["pk"] and i["sk"] == member["sk"] for i in stats_items(stack))

    stack.clock.advance(14 * 3600)  # 22:16 UTC: quiet hours (22-08), the next email is deferred
    emails, _ = red_flag(stack, user, "page-2", account_id=account)
    assert emails == []
    stack.post_events(started(user, "page-3", account_id=account))  # left open
    held = {i["sk"].split("#")[0] for i in stack.items() if i["pk"] == user}
    assert held == {"task", "user", "deferred", "alerting"}  # alerting: the email log and the escalation state
    assert stack.get_item(user, "alerting")["flags"] != "[]"

    assert one_click(stack, link_of(email["message"])[1]).status == 200
    count = len([i for i in stack.items() if i["pk"] == user])
    sent_before, alerts_before = len(stack.emails()), len(stack.cs_alerts())

    answer = erase(stack, user)
    assert answer.status == 200
    assert answer.json() == {"user_id": user, "deleted": count, "suppressed": True}
    left = {(i["pk"], i["sk"]) for i in stack.items()}
    assert left == {(m["pk"], m["sk"]) for m in markers(stack)} | {(f"esc#account#{account}", "escalation")}
    assert len(markers(stack)) == 2
    # the account's escalation state still names the user's recent red flags, until it expires (2 windows)
    assert user in stack.get_item(f"esc#account#{account}", "escalation")["state"]
    assert not any(i["pk"] == member["pk"] and i["sk"] == member["sk"] for i in stats_items(stack))

    stack.tick(60)  # the deletes reach the stream: deleting an open timer or a kept email alerts nobody
    assert (len(stack.emails()), len(stack.cs_alerts())) == (sent_before, alerts_before)
    assert erase(stack, user).json() == {"user_id": user, "deleted": 0, "suppressed": True}  # again: fine

    stack.clock.advance(10 * 3600)  # the next morning, out of quiet hours: the kept email is gone
    emails, alerts = red_flag(stack, user, "page-9")
    assert emails == [] and len(alerts) == 1  # the hashed opt-out still holds


def test_erasing_a_user_who_never_opted_out_does_not_opt_them_out(stack):
    red_flag(stack, "u-plain", "page-1")
    # the timer, and the alerting record (the email log and the escalation state, one record)
    assert erase(stack, "u-plain").json() == {"user_id": "u-plain", "deleted": 2, "suppressed": False}
    assert [i for i in stack.items() if i["pk"] in ("u-plain", "esc#user#u-plain")] == []
    assert len(red_flag(stack, "u-plain", "page-2")[0]) == 1


def test_erasing_an_unknown_user_is_a_200_with_nothing_deleted(stack):
    assert erase(stack, "nobody").json() == {"user_id": "nobody", "deleted": 0, "suppressed": False}


def test_a_percent_encoded_user_id_is_the_user_id(stack):
    red_flag(stack, "team/ada#1", "page-1")
    assert erase(stack, "team%2Fada%231").json()["deleted"] == 2  # the timer and the alerting record
    assert [i for i in stack.items() if i["pk"] == "team/ada#1"] == []


def test_a_busy_table_is_a_503_to_send_again(stack):
    (email,), _ = red_flag(stack, "u-busy", "page-1")
    token = link_of(email["message"])[1]
    throttled = "ProvisionedThroughputExceededException"
    with stack.faults(Fault("dynamodb", "PutItem", code=throttled, rate=1.0, table=stack.table_name)):
        busy = one_click(stack, token)
    assert busy.status == 503 and busy.headers["content-type"].startswith("text/html")
    assert busy.headers["retry-after"] and token not in busy.body
    assert markers(stack) == []
    with stack.faults(Fault("dynamodb", "Query", code=throttled, rate=1.0)):
        busy = erase(stack, "u-busy")
    assert (busy.status, busy.headers["retry-after"]) == (503, "1") and "send the request again" in busy.body
    assert one_click(stack, token).status == 200  # sent again: done
    assert erase(stack, "u-busy").json()["deleted"] == 2  # the timer and the alerting record


# --- (e) which routes need the API key -------------------------------------------------------------


TRACKING_ROUTES = ("batch", "track", "identify", "group", "page", "screen", "alias", "webhook")


def test_only_the_unsubscribe_routes_and_the_write_key_routes_are_public():
    t = Template()
    events = t.sam["Resources"]["UsersApiFunction"]["Properties"]["Events"]
    public = {e["Properties"]["Method"]: e["Properties"].get("Auth") for e in events.values()}
    assert {(e["Properties"]["Path"], e["Properties"]["Method"]) for e in events.values()} == {
        ("/v1/unsubscribe", "get"),
        ("/v1/unsubscribe", "post"),
        ("/v1/users/{user_id}/subscription", "put"),
        ("/v1/users/{user_id}", "delete"),
    }
    assert public == {"get": {"ApiKeyRequired": False}, "post": {"ApiKeyRequired": False}, "put": None, "delete": None}
    assert t.sam["Globals"]["Api"]["Auth"]["ApiKeyRequired"] is True  # what the others inherit

    sam = copy.deepcopy(t.sam)  # and what SAM makes of it: the API's OpenAPI body
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            res["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    cfn = transform(sam, {"SenderEmail": "help@example.com"}, _NoManagedPolicies())["Resources"]
    paths = cfn["ServerlessRestApi"]["Properties"]["Body"]["paths"]
    keyed = {(p, m): {"api_key": []} in (op.get("security") or []) for p, ops in paths.items() for m, op in ops.items()}
    assert keyed == {
        ("/v1/events", "post"): True,
        ("/v1/unsubscribe", "get"): False,
        ("/v1/unsubscribe", "post"): False,
        ("/v1/users/{user_id}/subscription", "put"): True,
        ("/v1/users/{user_id}", "delete"): True,
    } | {(f"/v1/{route}", "post"): False for route in TRACKING_ROUTES}  # the write key: checked by the function


# --- `redflag users` over HTTP ---------------------------------------------------------------------


@pytest.fixture
def users_api(stack):
    """127.0.0.1 playing API Gateway in front of the deployed users function: the stage prefix, the
    API key on the key routes; what it was sent is recorded."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode() or None
            parts = urlsplit(self.path)
            seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            path = parts.path.removeprefix("/Prod")
            if path != "/v1/unsubscribe" and self.headers.get("x-api-key") != KEY:
                status, headers, out = 403, {"Content-Type": JSON}, b'{"message":"Forbidden"}'
            else:
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()} or None
                answer = call(stack, self.command, path, query, body, self.headers.get("Content-Type"))
                status, headers, out = answer.status, answer.headers, answer.body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/Prod", seen
    server.shutdown()
    server.server_close()


def redflag_users(*args):
    result = CliRunner().invoke(users_app, list(args), env={"REDFLAG_API_KEY": None, "REDFLAG_API_URL": None})
    return result.exit_code, result.output


def test_redflag_users_opts_out_opts_in_and_erases_printing_ids_only(stack, users_api):
    base, seen = users_api
    red_flag(stack, "u-cli", "page-1")

    code, out = redflag_users("unsubscribe", "u-cli", "--email", "ada@example.com", "--url", base, "--api-key", KEY)
    assert (code, out) == (0, "u-cli: unsubscribed, address included\n")
    method, path, headers, body = seen[-1]
    assert (method, path, headers["x-api-key"], headers["content-type"]) == (
        "PUT",
        "/Prod/v1/users/u-cli/subscription",
        KEY,
        JSON,
    )
    assert json.loads(body) == {"subscribed": False, "email": "ada@example.com"}
    assert red_flag(stack, "u-cli", "page-2")[0] == []

    code, out = redflag_users(
        "resubscribe", "u-cli", "--email", "ada@example.com", "--url", base + "/v1/events", "--api-key", KEY
    )
    assert (code, out) == (0, "u-cli: subscribed, address included\n")  # the EventsApiUrl works as --url too
    assert len(red_flag(stack, "u-cli", "page-3")[0]) == 1

    code, out = redflag_users("erase", "u-cli", "--url", base, "--api-key", KEY)
    assert (code, out) == (0, "u-cli: erased, 4 item(s) deleted\n")
    assert seen[-1][:2] == ("DELETE", "/Prod/v1/users/u-cli")
    assert [i for i in stack.items() if i["pk"] == "u-cli"] == []


def test_redflag_users_says_why_it_failed(stack, users_api):
    base, seen = users_api
    code, out = redflag_users("erase", "u-1", "--url", base, "--api-key", "wrong")
    assert code == 1 and "HTTP 403: Forbidden (check --api-key)" in out
    code, out = redflag_users("erase", "a/b", "--url", base, "--api-key", KEY)
    assert code == 0 and seen[-1][1] == "/Prod/v1/users/a%2Fb"  # the id travels percent-encoded
    code, out = redflag_users("unsubscribe", "u-1", "--email", "nope", "--url", base, "--api-key", KEY)
    assert code == 1 and out.startswith("error: HTTP 422: email:")
    code, out = redflag_users("erase", "u-1", "--url", "ftp://x", "--api-key", KEY)
    assert code == 1 and "is not an http(s) URL" in out
    code, out = redflag_users("erase", "u-1", "--url", "http://127.0.0.1:9", "--api-key", KEY)
    assert code == 1 and "cannot reach" in out


@pytest.mark.parametrize("missing", ["UNSUBSCRIBE_SECRET_ARN", "TABLE_NAME", "STATS_TABLE_NAME"])
def test_a_missing_setting_fails_at_cold_start_naming_it(stack, missing):
    from pydantic import ValidationError

    function = stack.template.function_for("users_api")
    env = stack.function_env[function]
    stack.function_env[function] = {k: v for k, v in env.items() if k != missing}
    saved = dict(os.environ)
    os.environ.pop(missing, None)
    try:
        with pytest.raises(ValidationError) as exc:
            stack._import(function, stack.template.functions[function] / "app.py")
        assert missing.lower() in str(exc.value)
    finally:
        stack.function_env[function] = env
        os.environ.clear()
        os.environ.update(saved)


def test_the_redflag_command_has_the_users_commands():
    from typer.testing import CliRunner

    from redflag_local.cli import app

    out = CliRunner().invoke(app, ["users", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and all(c in out.output for c in ("unsubscribe", "resubscribe", "erase"))
