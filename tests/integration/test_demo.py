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
    # issue 16: an account turning red, a shopper stuck at a step, the abandonment rate crossing and recovering
    assert story["health_red"] == "acme" and story["health_signals"][0].startswith("weekly actives -")
    assert re.search(r"Account acme is red: health [\d.]+ in 2027-W05 \(from \w+ [\d.]+\)\. Most of it: weekly", text)
    assert story["stuck_step"] == "shipping" and "has been at shipping details of checking out for" in text
    assert (
        story["rate_changes"] == ["crossed", "recovered"] and story["shoppers_abandoned"] == 12
    )  # 10 in the first hour, 2 in the next
    assert "checkout abandonment: 20% of the runs of checkout" in text and "checkout abandonment recovered" in text
    report = text[text.index("9. The report") :]
    shown = report[: report.index("What came of the emails")]
    body = shown.splitlines()[1:]  # under the scene's rule (as wide as the demo's console)
    assert all(len(line) <= 80 for line in body) and "…" not in shown  # readable at 80 columns
    assert "Funnel: checking out (checkout):" in shown and "crossed at 20%" in shown and "acme: " in shown
    (checkout,) = story["report"].funnels
    assert [s.name for s in checkout.steps] == ["cart", "shipping", "payment", "confirmed"]
    assert checkout.steps[0].flagged == 12 and checkout.steps[1].flagged == 1  # the carts left, and Margaret


def test_redflag_demo_segment_sends_the_failing_scene_through_the_segment_sdk():
    from redflag_local.ops.rules_files import as_parameters, load_rules
    from redflag_local.standin.stack import LocalStack

    out = io.StringIO()
    rules, _ = load_rules()
    with LocalStack(clock_start=demo.MONDAY.timestamp() + 10 * 3600, env_overrides=demo.QUIET) as stack:
        stack.put_rules(as_parameters(rules))
        scene = demo.Demo(stack, Console(file=out, width=200), speed=0, segment=True)
        scene.failing()
        (email,) = stack.emails()
    text = out.getvalue()
    assert "through the Segment SDK" in text and "try #3 failed ('Email Template Failed' via Segment): flagged" in text
    assert scene.story.failure_flag and scene.story.segment_calls == 5  # identify, started, 3 failures
    assert email["to"] == "Alan Turing <alan@example.com>"  # the address and name came from identify
