"""`make demo` stays true: the two-week story shows every behaviour it announces (issues 9 and 10)."""

import io

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
    assert story["slack_posts"] == story["cs_alerts"] > 0  # one Slack message per CS alert, really POSTed
    text = out.getvalue()
    assert "learned threshold takes over" in text and "Where users struggle" in text
    assert "of those held out" in text
    assert "#customer-success" in text and "Escalation: user alan" in text
    rows = {(r.task, r.segment) for r in story["report"].tasks}
    assert ("create_landing_page", "all") in rows and ("create_landing_page", "power_user") in rows
