"""Each sample in events/ (the shapes `sam local invoke -e` takes) goes through its handler."""

import json
import math

import pytest

from redflag_local.standin.stack import LOCAL_ENV, ROOT

ALL = sorted(p.relative_to(ROOT / "events").as_posix() for p in (ROOT / "events").rglob("*.json"))
SAMPLES = [s for s in ALL if not s.startswith("cs_alerts_to_slack/")]  # on a stack with Slack, below


def reads_per_run(stack):
    """Index reads in one scheduled run: SweepsPerMinute in passes mode; one every SWEEP_POLL_SECONDS
    over the minute and its 5 s overlap in look-ahead mode (the default)."""
    env = LOCAL_ENV | stack.function_env["SweepDueTimersFunction"] | stack.env_overrides
    if env["SWEEP_MODE"] == "passes":
        return int(env["SWEEPS_PER_MINUTE"])
    return math.ceil(65 / float(env.get("SWEEP_POLL_SECONDS", 5)))


def stats(stack):
    """(completions, started) learned for the sample's task, across segments."""
    from redflag.adapters.stats_table import DynamoStats

    learned = DynamoStats(stack.physical["StatsTable"]).task_stats([("create_landing_page", "*")])
    counts = learned[("create_landing_page", "*")].counts if learned else {}
    return counts.get("completed", 0), learned[("create_landing_page", "*")].histogram.n if learned else 0


# SES's documented records: what each counts as, and what the feedback function did with it
SES_SAMPLES = {
    "bounce_permanent": ("bounce_permanent", "suppressed"),
    "bounce_transient": ("bounce_transient", "counted"),
    "bounce_on_suppression_list": ("ses_suppressed", "suppressed"),
    "complaint": ("complaint", "suppressed"),
    "send": ("send", "counted"),
    "delivery": ("delivery", "counted"),
    "click": ("click", "counted"),
    "reject": ("reject", "counted"),
    "rendering_failure": ("rendering_failure", "counted"),
    "delivery_delay": ("delivery_delay", "counted"),
}


def handled_as(kind, outcome):
    return lambda out: [(h["kind"], h["outcome"]) for h in out["handled"]] == [(kind, outcome)]


def expectation(stack, sample):
    alerts = (len(stack.emails()), len(stack.cs_alerts()))
    expected = {
        "events_to_timers/post_events.json": lambda out: out["statusCode"] == 202,
        "events_to_timers/post_single_event.json": lambda out: out["statusCode"] == 202,
        "events_to_timers/post_malformed_json.json": lambda out: out["statusCode"] == 400,
        "sweep_due_timers/scheduled.json": lambda out: (
            set(out) == {"due", "flagged", "lost_races", "passes"} and out["passes"] == reads_per_run(stack)
        ),
        "sweep_drain/worker.json": lambda out: (
            set(out) == {"due", "flagged", "lost_races", "passes"} and out["passes"] == reads_per_run(stack)
        ),
        "timers_to_alerts/ttl_expired_open_timer.json": lambda out: alerts == (1, 1),
        "timers_to_alerts/sweeper_flagged_timer.json": lambda out: alerts == (1, 1),
        "timers_to_alerts/funnel_step_flagged.json": lambda out: alerts == (1, 1),  # its rule rides on the timer
        "timers_to_alerts/rate_crossed.json": lambda out: alerts == (0, 1),  # for the product team: CS only
        "rates_to_flags/scheduled.json": lambda out: out["rules"] == 0 and out["crossed"] == 0,
        "timers_to_alerts/ttl_removed_flagged_timer.json": lambda out: alerts == (0, 0),
        "timers_to_alerts/ttl_removed_completed_timer.json": lambda out: alerts == (0, 0),
        "timers_to_alerts/user_deleted_open_timer.json": lambda out: alerts == (0, 0),
        "timers_to_stats/window_final_completion.json": lambda out: out == {} and stats(stack) == (1, 1),
        "weekly_usage_to_flags/scheduled.json": lambda out: out["flagged"] == 0,
        "users_api/get_unsubscribe.json": lambda out: out["statusCode"] == 403,  # the sample's token is a placeholder
        "users_api/post_unsubscribe.json": lambda out: out["statusCode"] == 403,
        "users_api/put_subscription.json": lambda out: out["statusCode"] == 200,
        "users_api/delete_user.json": lambda out: out["statusCode"] == 200,
        # the samples' write key and signature are placeholders: the stack generated its own secrets
        "tracking_api/post_batch.json": lambda out: out["statusCode"] == 401,
        "tracking_api/post_webhook_segment.json": lambda out: out["statusCode"] == 401,
    } | {f"ses_events_to_state/{name}.json": handled_as(*what) for name, what in SES_SAMPLES.items()}
    return expected[sample]


@pytest.mark.parametrize("sample", SAMPLES)
def test_sample_goes_through_its_handler(stack, sample):
    folder = sample.split("/")[0]
    out = stack.invoke(stack.template.function_for(folder), json.loads((ROOT / "events" / sample).read_text()))
    if folder == "timers_to_alerts":
        assert out == {"batchItemFailures": []}
    assert expectation(stack, sample)(out), out


def test_the_slack_sample_posts_one_message():
    from redflag_local.standin.receiver import Receiver
    from redflag_local.standin.stack import LocalStack

    slack = [s for s in ALL if s.startswith("cs_alerts_to_slack/")]
    assert slack
    with Receiver() as rx, LocalStack(parameters={"SlackWebhookParameter": "/redflag/slack"}) as stack:
        stack.put_slack_webhook(rx.url("/hook"))
        for sample in slack:
            event = json.loads((ROOT / "events" / sample).read_text())
            out = stack.invoke(stack.template.function_for("cs_alerts_to_slack"), event)
            assert out == {"posted": len(event["Records"]), "duplicate": 0, "rejected": 0}
        assert len(rx.delivered("/hook")) == len(slack)
