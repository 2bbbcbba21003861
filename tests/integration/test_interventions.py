"""Interventions on the deployed template (issue 10): quiet hours defer, the cap caps, escalation fires
once, the holdout holds out, templates render, the webhook is signed, CS can speak Chatbot."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import boto3
import pytest
from standardwebhooks import Webhook

from redflag_local.standin.receiver import Receiver
from redflag_local.standin.stack import LocalStack

PAGE = {"label": "creating a landing page", "threshold_seconds": 600}
NY = ZoneInfo("America/New_York")


def started(user, task="page", **user_info):
    info = {"email": f"{user}@example.com", "name": user.title()} | user_info
    return {"type": "task_started", "task": task, "user_id": user, "user": info}


def at_local(stack, year, month, day, hour, minute=0, second=0, zone=NY):
    stack.clock.advance(datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp() - stack.clock())


def test_an_email_due_in_the_users_quiet_hours_waits_for_8_am_their_time_and_cs_does_not():
    with LocalStack() as stack:  # QuietHours 22-08 (the template's default)
        stack.put_rules({"page": PAGE})
        at_local(stack, 2027, 1, 20, 21, 55)  # 21:55 in New York
        stack.post_events(started("night-owl", timezone="America/New_York"))
        stack.tick(601)  # due at 22:05: quiet
        assert stack.emails() == [] and len(stack.cs_alerts()) == 1
        kept = [i for i in stack.items() if i["sk"].startswith("deferred#")]
        assert len(kept) == 1 and kept[0]["due_at"] == datetime(2027, 1, 21, 8, tzinfo=NY).timestamp()
        at_local(stack, 2027, 1, 21, 7, 0)
        stack.tick(1)  # an hour early: nothing
        assert stack.emails() == []
        at_local(stack, 2027, 1, 21, 7, 59, 30)
        stack.tick(1)  # the sweeper's run reaches 08:00: it flags the deferred email then, the stream sends it
        (email,) = stack.emails()
        assert email["subject"] == "Need a hand with creating a landing page?"
        (kept,) = [i for i in stack.items() if i["sk"].startswith("deferred#")]
        assert kept["state"] == "flagged" and kept["flagged_at"] == datetime(2027, 1, 21, 8, tzinfo=NY).timestamp()
        assert len(stack.cs_alerts()) == 1


def test_the_fourth_email_to_one_user_in_a_day_is_capped_cs_still_hears():
    with LocalStack(parameters={"EmailCapPerUser": "3"}) as stack:
        stack.put_rules({f"t{i}": PAGE for i in range(4)})
        for i in range(4):
            stack.post_events(started("busy", task=f"t{i}"))
            stack.tick(601)
        assert len(stack.emails()) == 3 and len(stack.cs_alerts()) >= 4


def test_escalation_fires_once_at_the_third_flag_of_a_user_and_once_for_their_account():
    with LocalStack(parameters={"EscalateAfterFlags": "3", "QuietHours": "off", "EmailCapPerUser": "100"}) as stack:
        stack.put_rules({f"t{i}": PAGE for i in range(4)})
        for i in range(4):
            stack.post_events(started("struggler", task=f"t{i}", account_id="acme"))
            stack.tick(601)
            critical = [a for a in stack.cs_alerts() if a["attributes"]["severity"]["Value"] == "critical"]
            assert len(critical) == (0 if i < 2 else 2), i  # one for the user, one for the account; once
        user_alert = next(a for a in critical if a["message"]["scope"] == "user")
        assert len(user_alert["message"]["flags"]) == 3
        assert user_alert["attributes"]["user_id"]["Value"] == "struggler"


def test_users_in_the_holdout_are_flagged_and_told_to_cs_but_not_emailed():
    with LocalStack() as stack:
        stack.put_rules({"page": PAGE | {"holdout_percent": 50}})
        stack.post_events({"events": [started(f"h{i}") for i in range(40)]})
        stack.tick(601)
        emailed = {e["to"].split("<")[1].split("@")[0] for e in stack.emails()}
        from redflag.core.interventions import in_holdout

        assert emailed == {f"h{i}" for i in range(40) if not in_holdout(f"h{i}", 50)}
        assert 10 < len(emailed) < 30 and len(stack.cs_alerts()) == 40


def test_a_rule_template_reaches_the_real_email():
    template = {
        "subject": "{first_name}, {task_label} taking a while?",
        "text": "Hi {first_name}, it has been {elapsed}. Guide: {help_url}",
        "html": "<p>Hi <b>{first_name}</b>: <a href='{help_url}'>guide</a></p>",
    }
    with LocalStack() as stack:
        stack.put_rules({"page": PAGE | {"email": template, "help_url": "https://help.example.com/p"}})
        stack.post_events(started("ada", name="Ada <script>"))
        stack.tick(601)
        (email,) = stack.emails()
        assert email["subject"] == "Ada, creating a landing page taking a while?"
        assert email["text"].startswith("Hi Ada, it has been 10 minutes. Guide: https://help.example.com/p")
        assert "<b>Ada</b>" in email["html"] and "<script" not in email["html"]
        assert email["message"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.fixture
def receiver():
    """A product endpoint on 127.0.0.1 that records what it is sent."""
    with Receiver() as rx:
        yield rx.url("/redflag"), rx


def test_the_webhook_gets_a_signed_post_the_product_can_verify(receiver):
    url, got = receiver
    with LocalStack(env_overrides={"WEBHOOK_URL": url}) as stack:
        stack.put_rules({"page": PAGE | {"notify": ["webhook", "cs"]}})
        stack.post_events(started("ada", account_id="acme"))
        stack.tick(601)
        (post,) = got.posts
        body = post.body
        secret_arn = stack.function_env["TimersToAlertsFunction"]["WEBHOOK_SECRET_ARN"]
        stored = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        receiver = Webhook("whsec_" + base64.b64encode(stored.encode()).decode())  # as docs/webhooks.md says
        # the library's own signature for this id, time and body (its verify() reads the real clock; the
        # stack's is in 2027): the key derived from the deployed secret, the scheme, both as documented
        msg_id, sent_at = post.header("webhook-id"), int(post.header("webhook-timestamp"))
        expected = receiver.sign(msg_id, datetime.fromtimestamp(sent_at, UTC), body.decode())
        assert post.header("webhook-signature") == expected and sent_at == int(stack.clock())
        payload = json.loads(body)
        parts = dict(p.split("=", 1) for p in post.header("X-RedFlag-Signature").split(","))  # deprecated, kept
        expected = hmac.new(stored.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, parts["v1"])
        assert (payload["type"], payload["user_id"], payload["account_id"]) == ("red_flag", "ada", "acme")
        assert "ada@example.com" not in body.decode()
        assert stack.emails() == []  # notify had no "user"
        stack.deliver_stream(stack.read_stream())
        assert len(got.posts) == 1


def test_cs_can_speak_aws_chatbot():
    with LocalStack(parameters={"CsMessageFormat": "chatbot"}) as stack:
        stack.put_rules({"page": PAGE})
        stack.post_events(started("ada"))
        stack.tick(601)
        (cs,) = stack.cs_alerts()
        assert (cs["message"]["version"], cs["message"]["source"]) == ("1.0", "custom")
        assert "ada" in cs["message"]["content"]["description"].lower()
