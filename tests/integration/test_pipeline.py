"""End to end on the deployed template: HTTP events -> timers -> expiry -> SES email + SNS alert."""

from tests.integration.conftest import completed, started


def _three_users_one_finishes(stack):
    status, body = stack.post_events(
        {
            "events": [
                started("u-ada", "ada@example.com", "Ada Lovelace", properties={"template": "webinar"}),
                started("u-bob", "bob@example.com", "Bob Stone"),
                started("u-cy", "cy@example.com", "Cy Young"),
            ]
        }
    )
    assert status == 202 and [r["status"] for r in body["results"]] == ["armed"] * 3
    stack.clock.advance(8 * 60)
    status, body = stack.post_events(completed("u-bob"))
    assert (status, body["results"][0]["status"]) == (202, "completed")
    stack.clock.advance(7 * 60 + 1)  # past the 15-minute threshold


def test_ttl_expiry_emails_the_two_who_struggle_and_alerts_cs(stack):
    _three_users_one_finishes(stack)
    assert stack.expire_ttl() == 2  # bob's finished timer is kept for statistics, not expired
    responses = stack.deliver_stream()
    assert all(r == {"batchItemFailures": []} for r in responses)

    emails = stack.emails()
    assert sorted(e["to"] for e in emails) == ["Ada Lovelace <ada@example.com>", "Cy Young <cy@example.com>"]
    ada = next(e for e in emails if "ada@" in e["to"])
    assert ada["text"].startswith("Hi Ada,")
    assert "working on creating a landing page for over 15 minutes" in ada["text"]
    assert "Most people finish in about 10 minutes. Can we help?" in ada["text"]
    assert ada["subject"] == "Need a hand with creating a landing page?"

    cs = stack.cs_alerts()
    assert sorted(a["message"]["user_id"] for a in cs) == ["u-ada", "u-cy"]
    ada_cs = next(a for a in cs if a["message"]["user_id"] == "u-ada")
    assert ada_cs["message"]["properties"] == {"template": "webinar"}
    assert ada_cs["message"]["elapsed_seconds"] >= 900
    assert {k: v["Value"] for k, v in ada_cs["attributes"].items()} == {
        "task": "create_landing_page",
        "severity": "warning",
        "user_id": "u-ada",
    }


def test_nothing_before_the_threshold_and_flagged_within_20_seconds_after(passes_stack):
    stack = passes_stack  # SweepMode=passes: 3 reads a run, every 20 s
    stack.post_events(started("u-ada", "ada@example.com"))
    due = stack.clock() + 900
    stack.clock.advance(850)
    report = stack.sweep()  # one scheduled run: passes at +850, +870, +890 s
    assert (report["passes"], report["flagged"], stack.clock()) == (3, 0, due - 10)
    stack.expire_ttl()
    stack.deliver_stream()
    assert stack.emails() == [] and stack.cs_alerts() == []

    assert stack.sweep()["flagged"] == 1  # the next run: +890, +910 (flagged here), +930 s
    stack.deliver_stream()
    item = stack.get_item("u-ada", "task#create_landing_page#default")
    assert item["state"] == "flagged" and due <= item["flagged_at"] <= due + 20
    assert len(stack.emails()) == 1 and len(stack.cs_alerts()) == 1


def test_a_delete_that_is_not_ttl_sends_nothing(stack):
    stack.post_events(started("u-ada", "ada@example.com"))
    stack.clock.advance(901)
    stack.delete_item("u-ada", "task#create_landing_page#default")
    stack.deliver_stream()
    assert stack.emails() == [] and stack.cs_alerts() == []


def test_sweeper_flags_on_time_and_a_later_ttl_delete_sends_nothing_more(stack):
    _three_users_one_finishes(stack)
    report = stack.sweep()
    assert report["flagged"] == 2
    stack.deliver_stream()
    assert len(stack.emails()) == 2 and len(stack.cs_alerts()) == 2

    stack.clock.advance(40 * 86400)  # TTL finally removes the flagged and completed items
    assert stack.expire_ttl() >= 3
    stack.deliver_stream()
    assert len(stack.emails()) == 2 and len(stack.cs_alerts()) == 2


def test_a_replayed_stream_batch_sends_no_second_alert(stack):
    _three_users_one_finishes(stack)
    stack.expire_ttl()
    records = stack.read_stream()
    stack.deliver_stream(records)
    stack.deliver_stream(records)  # Lambda retried the batch
    assert len(stack.emails()) == 2 and len(stack.cs_alerts()) == 2


def test_user_without_email_gets_no_email_but_cs_is_alerted(stack):
    stack.post_events(started("u-anon"))
    stack.tick(901)
    assert stack.emails() == []
    assert [a["message"]["user_id"] for a in stack.cs_alerts()] == ["u-anon"]
