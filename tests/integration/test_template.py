"""The template is the truth: what moto deployed, and what moto ignores, read from template.yaml."""

import json

import boto3
import pytest
from moto.events.models import EventPattern

from redflag_local.standin.stack import ROOT, sample_event


def test_the_deployed_table_is_the_templates(stack):
    spec = stack.template.table("TimersTable")
    table = boto3.client("dynamodb").describe_table(TableName=stack.table_name)["Table"]
    assert table["KeySchema"] == spec["KeySchema"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["due-index"]
    # moto ignores TimeToLiveSpecification: the code must use the attribute the template names
    assert spec["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert all("expires_at" in item for item in stack.items())


def test_functions_run_python313_on_arm64_with_their_own_log_group():
    from redflag_local.standin.template import Template

    t = Template()
    glob = t.sam["Globals"]["Function"]
    assert glob["Runtime"] == "python3.13" and glob["Architectures"] == ["arm64"]
    groups = {json.dumps(g["Properties"]["LogGroupName"]) for g in t.resources("AWS::Logs::LogGroup").values()}
    for name in t.functions:
        assert any(name in g for g in groups), f"{name} has no log group"


@pytest.mark.parametrize(
    ("sample", "passes"),
    [
        ("ttl_expired_open_timer.json", True),
        ("sweeper_flagged_timer.json", True),
        ("ttl_removed_flagged_timer.json", False),
        ("ttl_removed_completed_timer.json", False),
        ("user_deleted_open_timer.json", False),
    ],
)
def test_stream_filter_passes_exactly_what_the_alerts_function_acts_on(sample, passes):
    from redflag_local.standin.template import Template

    t = Template()
    patterns = [EventPattern(None, p) for p in t.stream_filters("TimersToAlertsFunction")]
    record = sample_event(f"timers_to_alerts/{sample}")["Records"][0]
    assert any(p.matches_event(record) for p in patterns) is passes


def test_activity_records_expiring_never_pass_the_filter(stack):
    stack.post_events({"type": "user_active", "task": "create_landing_page", "user_id": "u1", "event_id": "e1"})
    stack.read_stream()  # skip the inserts
    stack.clock.advance(31 * 86400)
    assert stack.expire_ttl() == 1
    records = stack.read_stream()
    assert [(r["eventName"], r["dynamodb"]["Keys"]["sk"]["S"], "userIdentity" in r) for r in records] == [
        ("REMOVE", "user", True)
    ]
    assert stack.filter_stream(records) == []


def test_every_function_has_a_sample_event_for_each_shape_it_handles():
    from redflag_local.standin.template import Template

    for folder in Template().functions.values():
        assert list((ROOT / "events" / folder.name).glob("*.json")), f"no sample for {folder.name}"


def _sweep_rule():
    rules = boto3.client("events").list_rules()["Rules"]
    return next(r for r in rules if "Sweep" in r["Name"])


def test_the_sweeper_runs_every_minute_by_default(stack):
    rule = _sweep_rule()
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")


def test_sweep_schedule_off_disables_the_sweeper():
    from redflag_local.standin.stack import LocalStack

    with LocalStack(parameters={"SweepSchedule": "off"}) as s:
        assert _sweep_rule()["State"] == "DISABLED"
        s.put_rules({"create_landing_page": {"label": "x", "threshold_seconds": 60}})
        s.post_events({"type": "task_started", "task": "create_landing_page", "user_id": "u1"})
        s.clock.advance(61)
        s.expire_ttl()  # TTL is the backstop: still a red flag, just later
        s.deliver_stream()
        assert [a["message"]["user_id"] for a in s.cs_alerts()] == ["u1"]
