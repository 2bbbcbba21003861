"""What users typed, in the CS and email channels (issue 15): every string of every CS format escaped for
chat (defect 4), and a name that is not a plausible name never shown as one (defect 5)."""

import json
import re

import pytest

from redflag import kinds
from redflag.channels import cs, plan
from redflag.channels import email as email_channel
from redflag.channels.base import Context, RedFlag
from redflag.core import timers
from redflag.core.events import EventType, UserInfo
from redflag.core.text import plausible_name
from redflag.core.timers import TimerKey
from redflag.kinds import Rule

T0 = 1_800_000_000.0
HOSTILE = "<!channel> & <@U123>"


def flagged(user_id="u1", label="pages", **user):
    rule = Rule(label=label, threshold_seconds=60)
    info = UserInfo(email="ada@example.com", **user)
    key = TimerKey(user_id=user_id, task="t")
    t = kinds.apply_event(None, key, EventType.TASK_STARTED, T0, rule, T0, info).timer
    return timers.expire(t, T0 + 1200)


def strings(value):
    """Every string of a JSON value, keys too."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def chat_safe(text):
    return "<" not in text and ">" not in text and re.search(r"&(?!amp;|lt;|gt;)", text) is None


# --- defect 4: every string, every format -----------------------------------------------------------------


def test_the_chatbot_format_escapes_the_title_and_the_user_id_in_its_context():
    """The defect's exact input: a user id and a label with chat markup, CsMessageFormat=chatbot."""
    timer = flagged(user_id="<!channel>", label="<b>pages</b> & forms")
    alert = cs.CHANNEL.compose(RedFlag(kinds.get(timer.kind), timer), Context(T0 + 1200))
    message = cs.chatbot_message(alert)
    assert message["content"]["title"] == "Red flag: &lt;b&gt;pages&lt;/b&gt; &amp; forms (&lt;!channel&gt;)"
    assert message["metadata"]["additionalContext"]["user_id"] == "&lt;!channel&gt;"
    assert message["content"]["nextSteps"] == ["Reach out to &lt;!channel&gt;"]  # escaped once, not twice
    assert alert.attributes["user_id"] == "<!channel>"  # SNS attributes (filter policies) stay as typed


@pytest.mark.parametrize("fmt", ["json", "chatbot"])
def test_every_string_of_every_cs_format_is_chat_safe(fmt):
    timer = flagged(user_id=f"u {HOSTILE}", label=f"pages {HOSTILE}", name=f"Ada {HOSTILE}",
                    account_id=HOSTILE, segment="seg&<x>")  # fmt: skip
    timer = timer.model_copy(update={"properties": {HOSTILE: [HOSTILE, {HOSTILE: HOSTILE}]}})
    alert = cs.CHANNEL.compose(RedFlag(kinds.get(timer.kind), timer), Context(T0 + 1200))
    body = cs.chatbot_message(alert) if fmt == "chatbot" else alert.message
    unsafe = [s for s in strings(body) if not chat_safe(s)]
    assert unsafe == []
    assert "&amp;amp;" not in json.dumps(body)  # exactly once


# --- defect 5: a name that is not a plausible name ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "https://evil.example/reset?token=1",  # the defect's input
        "www.evil.example",
        "evil.example/reset",
        "Visit evil.example",
        "ada@example.com",
        " ",  # blank-looking: whitespace ...
        "\u3164",  # ... a Hangul filler (a letter to Unicode, shown as nothing)
        "\u3164 \u3164",
        "\u2800\u115f\u1160\uffa0",  # braille blank, more fillers
        "\u0301\u0301",  # combining marks alone
        "...",
        "12345",
        "x" * 101,
    ],
)
def test_not_a_plausible_name(name):
    assert plausible_name(name) is None


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Ada Lovelace", "Ada Lovelace"),
        ("  Grace   Hopper ", "Grace Hopper"),
        ("J. R. R. Tolkien", "J. R. R. Tolkien"),
        ("Zoë O'Brien-Smith", "Zoë O'Brien-Smith"),
        ("李小龍", "李小龍"),
        ("Ada & Co", "Ada & Co"),  # escaped by each medium, not refused
        ("<b>Ada</b>", "<b>Ada</b>"),
        ("\u3164Ada", "\u3164Ada"),
    ],
)
def test_a_plausible_name(name, shown):
    assert plausible_name(name) == shown


@pytest.mark.parametrize("name", ["https://evil.example/reset?token=1", "\u3164", "   "])
def test_the_email_greets_neutrally_and_cs_names_the_user_id(name):
    timer = flagged(user_id="u-42", name=name)
    email, cs_alert = plan(RedFlag(kinds.get(timer.kind), timer), Context(T0 + 1200))
    assert email.text.startswith("Hi there,") and "evil.example" not in email.text + email.html
    assert email.to_name is None  # no display name in the To header either
    assert cs_alert.message["summary"].startswith("u-42 ")  # the summary has its subject back
    facts = dict(kinds.get("task").facts(cs_alert.message))
    assert facts["User"] == "u-42"


def test_a_plausible_name_is_still_used():
    timer = flagged(user_id="u-42", name="Ada Lovelace")
    email, cs_alert = plan(RedFlag(kinds.get(timer.kind), timer), Context(T0 + 1200))
    assert email.text.startswith("Hi Ada,") and email.to_name == "Ada Lovelace"
    assert cs_alert.message["summary"].startswith("Ada Lovelace ")
    assert dict(kinds.get("task").facts(cs_alert.message))["User"] == "Ada Lovelace (u-42)"
    assert email_channel.email_values(timer, T0 + 1200)["first_name"] == "Ada"
