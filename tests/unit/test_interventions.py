"""Interventions that help and never annoy (issue 10), pure: templates, unsubscribe tokens, quiet hours,
the cap, the holdout, escalation (the webhook signature: test_webhook_signing.py)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from redflag import kinds
from redflag.channels import cs
from redflag.channels import email as email_channel
from redflag.channels import plan as plan_channels
from redflag.channels.base import Context, RedFlag
from redflag.core import interventions, timers, unsubscribe
from redflag.core.events import EventType, UserInfo, describe_errors
from redflag.core.interventions import Escalation, QuietHours, record_flag, reserve_email
from redflag.core.templates import EmailTemplate
from redflag.core.timers import TimerKey
from redflag.kinds import Rule


def compose_cs(timer, now):
    return cs.CHANNEL.compose(RedFlag(kinds.get(timer.kind), timer), Context(now))


def plan(timer, now):
    return plan_channels(RedFlag(kinds.get(timer.kind), timer), Context(now))


T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SECRET = b"s" * 64


def flagged(rule, user=UserInfo(email="ada@example.com", name="Ada <b>Lovelace</b>")):
    t = kinds.apply_event(None, TimerKey(user_id="u1", task="t"), EventType.TASK_STARTED, T0, rule, T0, user).timer
    return timers.expire(t, T0 + 1200)  # flagged 20 minutes in


# --- templates ---------------------------------------------------------------------------------------


def test_a_rule_template_is_rendered_with_each_value_escaped_for_its_medium():
    rule = Rule(
        label="pages & <forms>",
        threshold_seconds=900,
        expected_seconds=600,
        help_url="https://help.example.com/pages",
        email={
            "subject": "{first_name}, stuck on {task_label}?\r\nBcc: x@y.z",
            "text": "Hi {first_name}: {task_label} took {elapsed}; usual is {expected}. See {help_url}",
            "html": "<p>Hi <b>{first_name}</b>, {task_label}</p><a href='{help_url}'>help</a>",
        },
    )
    email = email_channel.compose_email(flagged(rule), T0 + 1200, lambda u, e: f"https://x.example/unsub?token={u}")
    assert email.subject == "Ada, stuck on pages & <forms>? Bcc: x@y.z"  # one line; the header encodes it
    assert email.text.startswith("Hi Ada: pages & <forms> took 20 minutes; usual is about 10 minutes.")
    assert "<b>Ada</b>, pages &amp; &lt;forms&gt;</p>" in email.html  # the values escaped, the markup kept
    assert "Unsubscribe" in email.html and "https://x.example/unsub?token=u1" in email.text
    assert email.unsubscribe_url == "https://x.example/unsub?token=u1"


@pytest.mark.parametrize(
    ("template", "field", "words"),
    [
        ({"subject": "x", "text": "{frist_name}"}, "email.text", "unknown placeholder {frist_name}"),
        ({"subject": "{elapsed:>9}", "text": "x"}, "email.subject", "no format specs"),
        ({"subject": "x", "text": "{first_name.__class__}"}, "email.text", "unknown placeholder"),
        ({"subject": "x", "text": "y", "html": "{0}"}, "email.html", "unknown placeholder {0}"),
        ({"subject": "x", "text": "a { b"}, "email.text", "not a template"),
    ],
)
def test_an_unknown_placeholder_is_an_error_naming_the_field(template, field, words):
    with pytest.raises(ValidationError) as exc:
        Rule.model_validate({"label": "t", "threshold_seconds": 60, "email": template})
    message = describe_errors(exc.value.errors())
    assert message.startswith(f"{field}:") and words in message


def test_the_default_email_per_kind_of_struggle():
    time_rule = Rule(label="creating a landing page", threshold_seconds=900)  # no expected time: no "usual"
    email = email_channel.compose_email(flagged(time_rule))
    assert "for over 15 minutes. Can we help?" in email.text
    failing = flagged(Rule(label="importing", threshold_seconds=900)).model_copy(
        update={"flag_reason": timers.FlagReason.FAILURES, "run_failures": 3}
    )
    assert email_channel.compose_email(failing).subject == "Trouble with importing?"
    assert EmailTemplate(subject="s", text="{{literal}}").text == "{{literal}}"


# --- unsubscribe tokens ---------------------------------------------------------------------------------


def test_a_token_verifies_and_a_forged_altered_or_expired_one_does_not():
    token = unsubscribe.sign(SECRET, "u-1", "Ada@Example.com", int(T0) + 3600)
    who = unsubscribe.verify(SECRET, token, T0)
    assert who.user_id == "u-1" and who.email_hash == unsubscribe.suppression_key(SECRET, "email", "ada@example.com")
    body, mac = token.split(".")
    with pytest.raises(unsubscribe.InvalidToken, match="forged"):
        unsubscribe.verify(SECRET, f"{body[:-2]}AA.{mac}", T0)
    with pytest.raises(unsubscribe.InvalidToken, match="forged"):
        unsubscribe.verify(b"another secret", token, T0)
    last = "A" if mac[-1] != "A" else "B"  # the signature's last character carries spare bits
    with pytest.raises(unsubscribe.InvalidToken, match="forged"):
        unsubscribe.verify(SECRET, f"{body}.{mac[:-1]}{last}", T0)
    with pytest.raises(unsubscribe.InvalidToken, match="expired"):
        unsubscribe.verify(SECRET, token, T0 + 3601)
    with pytest.raises(unsubscribe.InvalidToken, match="malformed"):
        unsubscribe.verify(SECRET, "no-dot", T0)
    assert unsubscribe.suppression_key(SECRET, "user", "u-1") != unsubscribe.suppression_key(SECRET, "user", "u-2")
    assert "u-1" not in unsubscribe.suppression_key(SECRET, "user", "u-1")


# --- quiet hours ----------------------------------------------------------------------------------------


def test_quiet_hours_across_midnight_in_a_non_utc_time_zone():
    quiet = QuietHours.parse("22-08")
    zone = ZoneInfo("America/New_York")
    evening = datetime(2027, 1, 15, 21, 59, tzinfo=zone).timestamp()
    late = datetime(2027, 1, 15, 23, 30, tzinfo=zone).timestamp()
    early = datetime(2027, 1, 16, 2, 0, tzinfo=zone).timestamp()
    morning = datetime(2027, 1, 16, 8, 0, tzinfo=zone).timestamp()
    assert quiet.next_allowed(evening, "America/New_York") is None
    assert quiet.next_allowed(late, "America/New_York") == morning
    assert quiet.next_allowed(early, "America/New_York") == morning
    assert quiet.next_allowed(morning, "America/New_York") is None
    # the same instant is daytime in Tokyo
    assert quiet.next_allowed(late, "Asia/Tokyo") is None
    # no zone: the stack's default
    assert quiet.next_allowed(late, None, "America/New_York") == morning


def test_quiet_hours_honour_a_daylight_saving_change_that_night():
    quiet = QuietHours.parse("22-08")
    zone = ZoneInfo("Europe/Paris")
    night = datetime(2027, 3, 27, 23, 0, tzinfo=zone).timestamp()  # clocks go forward at 02:00
    until = quiet.next_allowed(night, "Europe/Paris")
    assert datetime.fromtimestamp(until, zone).strftime("%H:%M %Z") == "08:00 CEST"
    assert until - night == 8 * 3600  # one hour less of night


# --- the cap and the holdout ----------------------------------------------------------------------------


def test_the_cap_allows_k_emails_a_window_and_a_retried_alert_keeps_its_slot():
    log = interventions.EmailLog()
    for i in range(3):
        ok, changed = reserve_email(log, f"a{i}", T0 + i, cap=3, window=86400)
        assert ok and changed is not None
        log = changed
    assert reserve_email(log, "a3", T0 + 10, 3, 86400) == (False, None)  # the 4th is capped
    assert reserve_email(log, "a1", T0 + 10, 3, 86400) == (True, None)  # a retry of the 2nd sends again
    ok, changed = reserve_email(log, "a4", T0 + 86400.5, 3, 86400)  # the window moved past a0
    assert ok and [a for a, _ in changed.sent] == ["a1", "a2", "a4"]


def test_the_holdout_is_a_stable_share_of_users():
    held = [interventions.in_holdout(f"user-{i}", 20) for i in range(5000)]
    assert 0.17 < sum(held) / len(held) < 0.23
    assert held == [interventions.in_holdout(f"user-{i}", 20) for i in range(5000)]
    assert not any(interventions.in_holdout(f"user-{i}", 0) for i in range(100))


# --- escalation -----------------------------------------------------------------------------------------


def test_escalation_fires_once_at_the_nth_flag_in_the_window_not_at_n_minus_1_nor_again_at_n_plus_1():
    state = Escalation(scope="user", subject_id="u1")
    fired, escalated = [], None
    for i in range(5):
        decision = record_flag(state, f"f{i}", T0 + i * 600, f"flag {i}", n=3, window=3600)
        state = decision.state or state
        fired.append(decision.escalate is not None)
        escalated = decision.escalate or escalated
    assert fired == [False, False, True, False, False]
    again = record_flag(state, "f2", T0 + 1200, "flag 2", n=3, window=3600)  # the escalating flag, retried
    assert again.state is None and again.escalate is not None
    within = record_flag(state, "f9", T0 + 1200 + 3599, "x", n=3, window=3600)  # 3 in the window, but escalated
    assert within.escalate is None
    next_window = record_flag(state, "f9", T0 + 1200 + 3601, "x", n=3, window=3600)  # f3, f4, f9: a new window
    assert next_window.escalate is not None and [f[0] for f in next_window.escalate.flags] == ["f3", "f4", "f9"]
    alert = cs.CHANNEL.compose(RedFlag(kinds.get("escalation"), escalated), Context(0))
    assert alert.attributes["severity"] == "critical" and len(alert.message["flags"]) == 3


# --- what leaves the building -------------------------------------------------------------------------------


def test_the_cs_alert_in_aws_chatbot_format():
    alert = compose_cs(flagged(Rule(label="x", threshold_seconds=60)), T0 + 100)
    message = cs.chatbot_message(alert)
    assert (message["version"], message["source"], message["content"]["textType"]) == (
        "1.0",
        "custom",
        "client-markdown",
    )
    assert message["content"]["description"] == alert.message["summary"]


def test_a_webhook_alert_carries_ids_not_addresses():
    rule = Rule(label="t", threshold_seconds=60, notify=["webhook"])
    (hook,) = plan(flagged(rule), T0 + 100)
    assert hook.channel == "webhook" and hook.payload["user_id"] == "u1"
    assert "ada@example.com" not in str(hook.payload) and "Lovelace" not in str(hook.payload)


def test_now_is_2027_01_15_08_00_utc():
    assert datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%d %H:%M") == "2027-01-15 08:00"
