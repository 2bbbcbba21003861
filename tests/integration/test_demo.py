"""`make demo` stays true: the two-week story shows every behaviour it announces (issues 9 and 10)."""

import io
import re

from rich.console import Console

from redflag_local.standin import demo


def test_the_demo_shows_every_scene():
    out = io.StringIO()
    story = demo.run(users=30, seed=7, speed=0, show=2, console=Console(file=out, width=160))
    assert story["fallback_threshold"] == 900  # the seed rule's fallback
    assert story["learned_threshold"] is not None and story["learned_threshold"] < 900  # learned from durations
    assert story["power_user_threshold"] == 1800  # the segment override
    assert story["failure_flag"]
    assert story["escalations"] >= 1 and story["capped"]
    assert story["deferred_until"] == "08:00 Tokyo" and story["deferred_sent"]
    assert story["inactivity_flag"]
    assert story["usage_drop"] == "acme"
    # hearing back from SES (issue 15): every email sent, all but the bounced one delivered
    assert story["ses_sent"] == story["emails"] and story["ses_delivered"] == story["emails"] - 1
    assert story["bounce_suppressed"] and story["complaint_suppressed"] and story["clicks_counted"] == 2
    assert story["slack_posts"] == story["cs_alerts"] > 0  # one Slack message per CS alert, really POSTed
    text = out.getvalue()
    assert "learned threshold takes over" in text and "Where users struggle" in text
    assert "of those held out" in text
    assert "a hard bounce for" in text and "marked the email as spam" in text and "followed the help link" in text
    assert re.search(r"completed after the flag: emailed \d+/\d+ .* points, 95% CI .* \(Newcomb\), p ", text, re.S)
    landing = next(o for o in story["report"].outreach if o.task == "create_landing_page")
    assert landing.arms[0].clicked == 2 and landing.arms[0].bounced == 1 and landing.arms[0].complained == 1
    assert "#customer-success" in text and "Escalation: user alan" in text
    rows = {(r.task, r.segment) for r in story["report"].tasks}
    assert ("create_landing_page", "all") in rows and ("create_landing_page", "power_user") in rows
