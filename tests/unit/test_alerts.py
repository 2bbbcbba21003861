"""What a red flag says, and that what users typed cannot break out of it."""

from email import message_from_bytes, policy

from redflag import kinds
from redflag.channels import cs
from redflag.channels import email as email_channel
from redflag.channels import plan as plan_channels
from redflag.channels.base import Context, RedFlag
from redflag.core import mime, timers
from redflag.core.events import UserInfo
from redflag.core.text import humanize
from redflag.core.timers import TimerKey, TimerState
from redflag.kinds import Rule


def compose_cs(timer, now):
    return cs.CHANNEL.compose(RedFlag(kinds.get(timer.kind), timer), Context(now))


def plan(timer, now):
    return plan_channels(RedFlag(kinds.get(timer.kind), timer), Context(now))


T0 = 1_800_000_000.0


def build_mime(email, sender):
    return mime.build_raw(
        sender=sender, to_name=email.to_name, to_address=email.to_address, subject=email.subject,
        text=email.text, html=email.html, alert_ids=mime.alert_id_parts(email.alert_id),
    )  # fmt: skip


def flagged(rule: Rule, user: UserInfo, properties=None) -> timers.Timer:
    return timers.Timer(
        key=TimerKey(user_id="u-42", task="create_landing_page"),
        state=TimerState.FLAGGED,
        started_at=T0,
        due_at=int(T0 + rule.threshold_seconds),
        rule=rule,
        user=user,
        properties=properties or {},
    )


LANDING = Rule(label="creating a landing page", threshold_seconds=900, expected_seconds=600)


def test_email_is_personal_and_says_how_long_and_what_is_normal():
    email = email_channel.compose_email(flagged(LANDING, UserInfo(email="ada@example.com", name="Ada Lovelace")))
    assert email.to_address == "ada@example.com"
    assert email.text.startswith("Hi Ada,")
    assert "working on creating a landing page for over 15 minutes" in email.text
    assert "Most people finish in about 10 minutes. Can we help?" in email.text


def test_no_address_no_email_but_cs_still_hears():
    planned = plan(flagged(LANDING, UserInfo(name="Ada")), T0 + 950)
    assert [a.channel for a in planned] == ["cs"]


def test_notify_controls_the_channels():
    only_user = Rule(label="x", threshold_seconds=60, notify=["user"])
    planned = plan(flagged(only_user, UserInfo(email="a@b.co")), T0 + 61)
    assert [a.channel for a in planned] == ["user"]


def test_user_typed_text_is_escaped_in_html_and_cannot_inject_headers():
    # the door refuses a name with CR/LF; stored data from before must still be inert
    evil = UserInfo.model_construct(
        email="eve@example.com", name="Eve <script>alert(1)</script>\r\nBcc: all@corp.example"
    )
    rule = Rule(label="a <b>bold</b> task\r\nX-Evil: 1", threshold_seconds=600)
    email = email_channel.compose_email(flagged(rule, evil))
    assert "<script>" not in email.html and "&lt;script&gt;" not in email.html  # only the first name is used
    assert "&lt;b&gt;bold&lt;/b&gt;" in email.html and "<b>" not in email.html
    msg = message_from_bytes(build_mime(email, "help@redflag.example"), policy=policy.default)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "\n" not in msg["Subject"] and msg["To"].addresses[0].addr_spec == "eve@example.com"


def test_cs_alert_carries_who_what_how_long_and_properties_with_filterable_attributes():
    user = UserInfo(email="ada@example.com", name="Ada", segment="trial", account_id="acme")
    cs = compose_cs(flagged(LANDING, user, {"template": "webinar"}), T0 + 960)
    assert cs.attributes == {"task": "create_landing_page", "severity": "warning", "user_id": "u-42"}
    assert cs.message["elapsed_seconds"] == 960
    assert cs.message["properties"] == {"template": "webinar"}
    assert cs.message["user"]["account_id"] == "acme"
    assert "Ada has been on creating a landing page for 16 minutes" in cs.message["summary"]


def test_alert_ids_differ_per_channel_and_per_run():
    t = flagged(LANDING, UserInfo(email="a@b.co"))
    later = t.model_copy(update={"started_at": T0 + 5000})
    ids = {t.alert_id("user"), t.alert_id("cs"), later.alert_id("user")}
    assert len(ids) == 3


def test_humanize():
    assert humanize(30) == "30 seconds"
    assert humanize(900) == "15 minutes"
    assert humanize(3600) == "1 hour"
    assert humanize(5400) == "90 minutes"
    assert humanize(7200) == "2 hours"
