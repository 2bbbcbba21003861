"""Response rate and did it help, on the deployed template (issue 15): emails the alerts function really
sent, SES's own documented events about them published through the configuration set's destination,
counted per rule and arm by the feedback function once each; completion after the flag and retention
from the stream; `redflag report` reading it all back with the library's interval and p-value."""

import copy
import json
import re
from datetime import UTC, datetime

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from redflag.adapters.stats_table import DynamoStats, user_hash
from redflag.core.interventions import in_holdout
from redflag.services.learning import Active, Fold
from redflag_local.ops import report
from redflag_local.standin.stack import LocalStack
from tests.integration.test_ses_feedback import documented, outcomes
from tests.integration.test_users_api import erase, stats_items

HELP = "https://help.example.com/pages"
PAGE = {"label": "creating a landing page", "threshold_seconds": 600, "holdout_percent": 50, "help_url": HELP}
EMAILED, HELD_OUT = ("bob", "fay", "gus"), ("ann", "cy")
DAY = 86400


def event(kind, user, task="page"):
    return {"type": kind, "task": task, "user_id": user, "user": {"email": f"{user}@example.com", "account_id": "acme"}}


def publish(stack, name, user, **changes):
    """SES's documented record ``name`` about the email sent to ``user``, as SES publishes it."""
    index = next(i for i, e in enumerate(stack.emails()) if e["to"] == f"{user}@example.com")
    record = stack.ses_event(documented(name), index)
    for part, values in changes.items():
        record[part] |= values
    return outcomes(stack.publish_ses_event(record))


def clicked_help(stack, user):
    return publish(stack, "click", user, click={"link": HELP, "linkTags": {"redflag": ["help"]}})


@pytest.fixture(scope="module")
def story():
    assert all(not in_holdout(u, 50) for u in EMAILED) and all(in_holdout(u, 50) for u in HELD_OUT)
    with LocalStack(parameters={"QuietHours": "off"}) as stack:
        stack.put_rules({"page": PAGE})
        stack.post_events({"events": [event("task_started", u) for u in EMAILED + HELD_OUT]})
        stack.tick(601)
        published = {}
        for user in EMAILED:
            published[user] = publish(stack, "send", user)
        published["bob again"] = publish(stack, "send", "bob")  # SNS delivering it twice
        for user in ("bob", "fay"):
            publish(stack, "delivery", user)
        published["click"] = clicked_help(stack, "bob")
        published["click again"] = clicked_help(stack, "bob")  # a second click on the same email
        published["other link"] = publish(stack, "click", "fay")  # SES's example link: not the help link
        publish(stack, "complaint", "fay")
        publish(stack, "bounce_permanent", "gus")
        stack.post_events({"events": [event("task_completed", u) for u in ("bob", "ann")]})
        stack.deliver_stream()
        stack.clock.advance(8 * DAY)  # active in the week from day 7 after the flag: bob and ann
        stack.post_events({"events": [event("user_active", u, "app") for u in ("bob", "ann")]})
        stack.deliver_stream()
        stack.clock.advance(7 * DAY)  # that week is over for every flagged user
        yield stack, published, report.from_stack(stack)


def test_each_ses_event_is_counted_once_for_its_rule_and_arm(story):
    stack, published, r = story
    assert published["bob"] == [("send", "counted", 0)] and published["bob again"] == [("send", "counted", 0)]
    (page,) = r.outreach
    emailed, held = page.arms
    assert (emailed.arm, held.arm) == ("emailed", "holdout")
    got = [(a.flagged, a.sent, a.delivered, a.bounced, a.complained, a.clicked, a.completed_after_flag)
           for a in page.arms]  # fmt: skip
    assert got == [(3, 3, 2, 1, 1, 1, 1), (2, 0, 0, 0, 0, 0, 1)]
    assert page.response_rate == 0.5  # 1 of the 2 delivered emails had its help link followed
    assert page.lines[0] == "response: 1 of 2 delivered emails had their help link followed (50%)"
    counters = {(i["pk"], i["sk"]): i for i in stats_items(stack)}
    assert {k: int(v) for k, v in counters[("email#page", "arm#emailed")].items() if k not in ("pk", "sk")} == {
        "sent": 3, "delivered": 2, "bounced": 1, "complained": 1, "clicked": 1
    }  # fmt: skip


def test_the_help_link_is_the_one_tracked_and_list_unsubscribe_is_sent_as_written(story):
    stack, _, _ = story
    for email in stack.emails():
        message = email["message"]
        url = re.search(r'<a ses:no-track href="([^"]+)">Unsubscribe</a>', email["html"]).group(1)
        assert message["List-Unsubscribe"].strip() == f"<{url.replace('&amp;', '&')}>"  # no tracking redirect
        assert f'<a ses:tags="redflag:help;" href="{HELP}">' in email["html"]
        assert email["html"].count("<a ") == 2


def test_did_it_help_is_the_librarys_interval_and_p_value_with_the_not_enough_data_line(story):
    _, _, r = story
    (page,) = r.outreach
    done, week1, week4 = page.comparisons
    low, high = confint_proportions_2indep(1, 3, 1, 2, method="newcomb", compare="diff")
    _, p = proportions_ztest([1, 1], [3, 2])
    assert (done["emailed"], done["held_out"]) == ({"users": 3, "hits": 1}, {"users": 2, "hits": 1})
    assert done["ci95"] == [pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12)]
    assert done["p_value"] == pytest.approx(p, abs=1e-12) and done["small"]
    assert any(line.startswith("completed after the flag: emailed 1/3 (33.3%) vs held out 1/2 (50.0%): -16.7 points")
               for line in page.lines)  # fmt: skip
    assert any(line.startswith("not enough data yet — about ") for line in page.lines)
    # retention: flagged users of an account, active in the week from day 7 after the flag
    assert (week1["measure"], week1["emailed"], week1["held_out"]) == (
        "active 7 days after the flag",
        {"users": 3, "hits": 1},
        {"users": 2, "hits": 1},
    )
    assert week4["emailed"]["users"] == 0  # nobody is 35 days past the flag yet
    assert "active 28 days after the flag: no flagged user is 35 days past the flag yet" in page.lines
    assert not any(line.startswith("active 28 days after the flag: emailed") for line in page.lines)


def test_the_report_keeps_its_shape_and_reads_at_80_columns(story, tmp_path):
    from rich.console import Console

    _, _, r = story
    assert report.from_json(r.model_dump_json()) == r
    assert json.loads(r.model_dump_json())["outreach"][0]["task"] == "page"
    console = Console(width=80, record=True, force_terminal=False)
    report.render(r, "table", console)
    text = console.export_text()
    section = text[text.index("What came of the emails") :]
    assert all(len(line) <= 80 for line in section.splitlines())
    assert "emailed" in section and "held out" in section and "95% CI" in section
    assert "…" not in section  # no cell clipped
    assert re.search(r"emailed +3 +3 +2 +1 +1 +1 +1", section) and re.search(r"held out +2( +-){5} +1", section)
    path = report.plot(r, tmp_path / "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_window_written_twice_counts_retention_once_and_erasure_forgets_the_entry(story):
    stack, _, _ = story
    stats = DynamoStats(stack.physical["StatsTable"])
    before = stats.retention("page")
    flagged_day = datetime.fromtimestamp(stack.clock() - 15 * DAY, UTC)
    later = flagged_day.timestamp() + 9 * DAY
    fold = Fold(active={("acme", "fay", "x"): Active("acme", "fay", datetime.fromtimestamp(later, UTC).strftime(
        "%Y-%m-%d"), later)})  # fmt: skip
    for _ in range(2):  # a replayed window
        stats.persist(copy.deepcopy(fold), f"shard#replay-{_}", stack.clock())
    after = stats.retention("page")
    (key,) = [k for k in after if k[0] == "emailed"]
    assert after[key]["active7"] == before[key]["active7"] + 1  # fay: once
    retained = [i for i in stats_items(stack) if i["pk"] == "retain#acme" and i["sk"] == user_hash("acme", "fay")]
    assert retained and retained[0]["t#page"]["w7"] is True
    assert erase(stack, "fay").status == 200
    assert not [i for i in stats_items(stack) if i["pk"] == "retain#acme" and i["sk"] == user_hash("acme", "fay")]
