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
    assert fields["User"] == "u-1"  # the name holds a URL and an address: not a name (test_channel_text.py)
    assert fields["Task"] == "creating a landing page"
    assert fields["Open for"] == "20 minutes" and fields["Usually"] == "6 minutes"
    assert fields["Account"] == "acme &amp; co" and fields["Segment"] == "new_user"
    props = next(b for b in payload["blocks"] if b.get("text", {}).get("text", "").startswith("*Properties*"))
    assert '"nested": {"k": "a&amp;b"}' in props["text"]["text"]
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Red flag: creating a landing page (u-1)", "emoji": True},
    }


def test_a_name_with_markup_is_shown_escaped():
    payload = slack.message(red_flag(user={"name": "Ada <b>x</b> & co"}), "s")
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in payload["blocks"][2]["fields"]}
    assert fields["User"] == "Ada &lt;b&gt;x&lt;/b&gt; &amp; co (u-1)"


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


# --- issue 15, defect 1: clipped after escaping, never inside an entity; valid Block Kit ------------------

AMPERSAND_LABEL = (
    "Plans & pricing & billing & invoices & refunds & taxes: setting up the whole account for a new team, "
    "with every seat, every invoice and every receipt in order"
)
HTML_PROPERTIES = {"html": "<p>" + "<br>" * 348 + "&</p>"}  # 1,400 characters of HTML


def valid_block_kit(payload):
    """What Slack checks before it posts: every block parses as slack_sdk's Block Kit model and holds its
    limits (slack_sdk checks text lengths; a field's 2,000 and a section's ten fields are checked here),
    and no text is cut inside an entity."""
    from slack_sdk.models.blocks import Block

    assert len(payload["blocks"]) <= 50
    for raw in payload["blocks"]:
        block = Block.parse(raw)
        assert block is not None and block.to_dict()["type"] == raw["type"]
        block.validate_json()  # SlackObjectFormationError when a limit is passed
        assert len(raw.get("fields", [])) <= 10
        assert all(len(f["text"]) <= slack.FIELD_MAX for f in raw.get("fields", []))
    for text in texts(payload):
        assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, text[-20:]  # no entity cut in two


def test_a_label_dense_with_ampersands_keeps_the_header_within_150_characters():
    subject = f"Red flag: {AMPERSAND_LABEL} (u-1)"
    assert len(subject) == 174 and subject.count("&") == 5
    payload = slack.message(red_flag(label=AMPERSAND_LABEL), subject)
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) <= slack.HEADER_MAX  # was 166: clipped to 146 characters, then escaped
    assert header.startswith("Red flag: Plans &amp; pricing &amp; billing") and header.endswith("…")
    valid_block_kit(payload)


def test_html_in_properties_keeps_the_section_within_3000_characters():
    assert len(HTML_PROPERTIES["html"]) == 1400
    payload = slack.message(red_flag(properties=HTML_PROPERTIES), "s")
    (props,) = [b for b in payload["blocks"] if b.get("text", {}).get("text", "").startswith("*Properties*")]
    text = props["text"]["text"]
    assert len(text) <= slack.SECTION_MAX  # was 3,534: clipped to 1,500 characters, then escaped
    assert text.startswith('*Properties*\n```{"html": "&lt;p&gt;&lt;br&gt;') and text.endswith("…```")
    valid_block_kit(payload)


@pytest.mark.parametrize("unit", ["&", "<", ">", "a&", "<>&", "&amp;", "<!channel>", "é&"])
@pytest.mark.parametrize("where", ["label", "summary", "user", "properties", "lines", "context", "chatbot"])
def test_every_message_is_valid_block_kit_whatever_is_typed_and_wherever(unit, where):
    dense = unit * 4000
    if where == "chatbot":
        alert = {"version": "1.0", "source": "custom", "content": {"title": dense, "description": dense},
                 "metadata": {"eventType": dense}}  # fmt: skip
        payload = slack.message(alert)
    else:
        over = {
            "label": {"label": dense},
            "summary": {"summary": dense},
            "user": {"user": {"name": dense, "account_id": dense, "segment": dense}, "user_id": dense},
            "properties": {"properties": {dense[:300]: dense, "n": [dense, {"k": dense}]}},
            "lines": {"reason": "escalation", "scope": "user", "user_id": dense,
                      "flags": [{"flag": str(i), "at": "2027-01-01T10:00", "what": dense[:400]} for i in range(30)]},
            "context": {"severity": dense, "run_id": dense},
        }[where]  # fmt: skip
        payload = slack.message(red_flag(**over), None if where == "label" else "s", "https://a.example/{user_id}")
    valid_block_kit(payload)
    assert payload["text"] and len(payload["text"]) <= slack.SECTION_MAX


def test_clipping_keeps_whole_entities_and_what_fits_unchanged():
    assert slack.clip_escaped("a & b", 9) == "a &amp; b"  # fits: unchanged
    assert slack.clip_escaped("a & b", 8) == "a &amp;…"
    assert slack.clip_escaped("a & b", 7) == "a …"  # the entity does not fit: dropped whole
    assert slack.clip_escaped("<<<", 10) == "&lt;&lt;…"
    once = slack.message(red_flag(summary="&lt; typed"), chat_escape("&lt; typed"))  # as published
    assert once["blocks"][0]["text"]["text"] == "&amp;lt; typed"  # what was typed, escaped exactly once
    assert once["text"] == ":warning: &amp;lt; typed"
