"""The Slack message (pure): what CS reads, and that nothing a user typed can ping or format a link."""

import json
import re

import pytest

from redflag.channels import slack
from redflag.core.text import chat_escape

HOSTILE = "<!channel> <b>x</b> & <@U123> <https://evil.example|click>"


def red_flag(**over):
    message = {
        "summary": f"{HOSTILE} has been on creating a landing page for 20 minutes (red flag at 15 minutes)",
        "reason": "time",
        "severity": "warning",
        "task": "create_landing_page",
        "label": "creating a landing page",
        "user_id": "u-1",
        "instance_id": "default",
        "run_id": "1800000000000",
        "user": {"name": HOSTILE, "account_id": "acme & co", "segment": "new_user"},
        "elapsed_seconds": 1200,
        "threshold_seconds": 900,
        "usual_seconds": 360,
        "properties": {"plan": "<!here>", "nested": {"k": "a&b"}},
    }
    return chat_escape(message | over)  # as the alerts function publishes it


def texts(payload):
    """Every string Slack would parse in the payload."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("text", "url") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(payload)
    return out


def test_no_user_value_becomes_a_mention_a_link_or_markup():
    payload = slack.message(red_flag(), "Red flag: creating a landing page (u-1)")
    for text in texts(payload):
        assert "<" not in text and ">" not in text, text  # no <!channel>, <@U123>, <url|label> survives
        assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, text  # every & is an entity
    shown = json.dumps(payload)
    assert "&lt;!channel&gt;" in shown and "&lt;@U123&gt;" in shown and "&lt;!here&gt;" in shown


def test_values_are_escaped_exactly_once_whoever_published_them():
    once = slack.message(red_flag(), "s")
    raw = slack.message(json.loads(json.dumps(red_flag())) | {"summary": HOSTILE}, "s")
    unescaped_publisher = slack.message({"summary": HOSTILE, "user_id": "u-1"}, "s")
    assert "&amp;amp;" not in json.dumps(once) and "&amp;lt;" not in json.dumps(once)
    assert raw["text"] == unescaped_publisher["text"] == ":warning: " + slack.escape(HOSTILE)
    assert slack.escape("&lt;") == "&lt;" and slack.escape("<") == "&lt;" and slack.escape("a & b") == "a &amp; b"


def test_the_message_says_who_which_task_how_long_against_usual_account_and_properties():
    payload = slack.message(red_flag(), "Red flag: creating a landing page (u-1)")
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in payload["blocks"][2]["fields"]}
    assert fields["User"].endswith("(u-1)") and fields["Task"] == "creating a landing page"
    assert fields["Open for"] == "20 minutes" and fields["Usually"] == "6 minutes"
    assert fields["Account"] == "acme &amp; co" and fields["Segment"] == "new_user"
    props = next(b for b in payload["blocks"] if b.get("text", {}).get("text", "").startswith("*Properties*"))
    assert '"nested": {"k": "a&amp;b"}' in props["text"]["text"]
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Red flag: creating a landing page (u-1)", "emoji": True},
    }


def test_the_link_back_fills_the_template_with_url_encoded_ids():
    payload = slack.message(red_flag(user_id="a/b?c"), "s", "https://admin.example.com/u/{user_id}?acct={account_id}")
    (button,) = payload["blocks"][-1]["elements"]
    assert button["url"] == "https://admin.example.com/u/a%2Fb%3Fc?acct=acme%20%26%20co"
    assert all(b["type"] != "actions" for b in slack.message(red_flag(), "s")["blocks"])  # no template: no link


@pytest.mark.parametrize(
    ("message", "facts"),
    [
        (
            {"summary": "Account acme fell", "reason": "usage_drop", "account_id": "acme", "week": "2027-W05",
             "actives_before": 10, "actives_after": 3, "drop_percent": 70, "threshold_percent": 50},
            {"Account": "acme", "Week": "2027-W05", "Weekly actives": "10 -&gt; 3", "Drop": "70% (flag at 50%)"},
        ),
        (
            {"summary": "Escalation", "reason": "escalation", "severity": "critical", "scope": "user", "user_id": "u-9",
             "flags": [{"flag": "f1", "at": "2027-01-01T10:00:00+00:00", "what": "<!channel> page"}]},
            {"Who": "user u-9", "Red flags": "1"},
        ),
        (
            {"summary": "failed", "reason": "failures", "user_id": "u-2", "label": "sending", "run_failures": 3},
            {"User": "u-2", "Task": "sending", "Failures in this run": "3"},
        ),
    ],
)  # fmt: skip
def test_each_kind_of_cs_alert_has_its_facts(message, facts):
    payload = slack.message(chat_escape(message), "subject")
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in payload["blocks"][2]["fields"]}
    assert fields == facts
    assert "<!channel>" not in json.dumps(payload)


def test_aws_chatbot_format_is_read_too_and_limits_hold():
    chatbot = {"version": "1.0", "source": "custom", "content": {"title": "T <!channel>", "description": "x" * 5000}}
    payload = slack.message(chatbot)
    assert payload["blocks"][0]["text"]["text"] == "T &lt;!channel&gt;"
    assert all(len(t) <= slack.SECTION_MAX for t in texts(payload))
    long_name = red_flag(user={"name": "n" * 5000})
    assert all(len(f["text"]) <= slack.FIELD_MAX for f in slack.message(long_name, "s")["blocks"][2]["fields"])
