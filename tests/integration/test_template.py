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
        ("funnel_step_flagged.json", True),
        ("rate_crossed.json", True),
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


# --- the public edge: what CloudFormation deploys (the SAM-translated template; moto never sees the API) ---

ACCOUNT_LIMITS = (10_000, 5_000)  # API Gateway's default per account and region (rate/s, burst), shared by every API


@pytest.fixture(scope="module")
def cfn():
    from redflag_local.translated import translate

    return translate()


def _default(cfn, node):
    """A value as deployed with the parameters' defaults (a Ref to a parameter resolved)."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return cfn["Parameters"][node["Ref"]]["Default"]
    return node


def _stage(cfn):
    (stage,) = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    return stage


def _keyless_routes(cfn):
    body = cfn["Resources"]["ServerlessRestApi"]["Properties"]["Body"]
    return {
        (path, method.upper())
        for path, methods in body["paths"].items()
        for method, op in methods.items()
        if not any("api_key" in s for s in op.get("security", []))
    }


def test_the_stage_throttles_every_route_and_each_keyless_route_tighter(cfn):
    # ResourcePath: "/*" (every route) or "/" + the path with each "/" written "~1" (CloudFormation's encoding)
    settings = {
        (p if (p := s["ResourcePath"]) == "/*" else p[1:].replace("~1", "/"), s["HttpMethod"]): s
        for s in _stage(cfn)["MethodSettings"]
    }
    limits = {
        k: (_default(cfn, s["ThrottlingRateLimit"]), _default(cfn, s["ThrottlingBurstLimit"]))
        for k, s in settings.items()
    }
    stage_rate, stage_burst = limits.pop(("/*", "*"))
    # a method's own setting replaces the stage's: every route without a key has one, and only those (the
    # unsubscribe pages; the tracking API, whose write key the function checks)
    tracking = {(f"/v1/{r}", "POST") for r in ("batch", "track", "identify", "group", "page", "screen", "alias")}
    expected = {("/v1/unsubscribe", "GET"), ("/v1/unsubscribe", "POST"), ("/v1/webhook", "POST")} | tracking
    assert set(limits) == _keyless_routes(cfn) == expected
    for rate, burst in limits.values():
        assert 0 < rate < stage_rate and 0 < burst < stage_burst
        assert burst >= rate  # the bucket holds at least a second of the rate
    # the stage bounds all keys together, each key held to the usage plan; all under the account's shared limits
    (plan,) = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert plan["Throttle"]["RateLimit"] <= stage_rate < ACCOUNT_LIMITS[0]
    assert plan["Throttle"]["BurstLimit"] <= stage_burst < ACCOUNT_LIMITS[1]
    # no execution logs nor data traces (they log the query string: the token), no paid per-method metrics
    assert not any(s.get(k) for s in settings.values() for k in ("DataTraceEnabled", "LoggingLevel", "MetricsEnabled"))


def _render(fmt, status, **values):
    """An access log line as API Gateway writes it: each $context variable replaced, "-" when it has no value."""
    import re

    names = {"$context.status": str(status)} | {f"$context.{k}": v for k, v in values.items()}
    return json.loads(re.sub(r"\$context(?:\.\w+)+", lambda m: names.get(m.group(0), "-"), fmt))


def test_the_access_log_holds_route_status_and_latency_and_no_personal_data(cfn):
    import re

    stage = _stage(cfn)
    assert stage["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    group = cfn["Resources"]["ApiAccessLogGroup"]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["DependsOn"] == "ApiGatewayAccount"  # the stage (which names the group) waits for the logging role
    account = cfn["Resources"]["ApiGatewayAccount"]["Properties"]
    assert account["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}

    fmt = stage["AccessLogSetting"]["Format"]
    variables = set(re.findall(r"\$\w+(?:\.\w+)*", fmt))
    assert all(v.startswith("$context.") for v in variables)  # no $input/$method: no body, query string or header
    identity = {v for v in variables if v.startswith("$context.identity.")}
    assert identity == {"$context.identity.apiKeyId"}  # not sourceIp, userAgent, caller, user ...
    assert "$context.path" not in variables  # the path as called (a user id in it); resourcePath is the pattern
    assert not any(w in v.lower() for v in variables for w in ("override", "authorizer", "querystring", "header"))
    # valid JSON even for a request rejected before any integration ran (every other variable "-")
    line = _render(fmt, 429, resourcePath="/v1/unsubscribe", httpMethod="POST")
    assert {"requestId", "httpMethod", "resourcePath", "status", "responseLatency", "errorType"} <= set(line)
    assert line["status"] == 429 and line["resourcePath"] == "/v1/unsubscribe"


def _filter_matches(pattern, line):
    """CloudWatch Logs' JSON filter syntax, the subset the template uses: terms ($.field op value) joined by &&;
    "=" on a quoted string compares strings, >=/<= on a number compare numbers (never a quoted "403")."""
    import re

    for term in re.fullmatch(r"\{ (.+) \}", pattern).group(1).split(" && "):
        field, op, want = re.fullmatch(r'\(\$\.(\w+) (=|>=|<=) ("[^"]*"|\d+)\)', term).groups()
        got = line.get(field)
        if want.startswith('"'):
            ok = op == "=" and got == want[1:-1]
        else:
            ok = isinstance(got, int) and {"=": got == int(want), ">=": got >= int(want), "<=": got <= int(want)}[op]
        if not ok:
            return False
    return True


@pytest.mark.parametrize(
    ("path", "method", "status", "counted"),
    [
        ("/v1/unsubscribe", "GET", 403, True),  # a forged or expired token
        ("/v1/unsubscribe", "POST", 429, True),  # the route's throttle
        ("/v1/unsubscribe", "POST", 400, True),
        ("/v1/unsubscribe", "POST", 200, False),
        ("/v1/unsubscribe", "POST", 503, False),  # a 5xx is Api5xxAlarm's
        ("/v1/events", "POST", 403, False),  # a missing key on a keyed route
        ("/v1/users/{user_id}", "DELETE", 404, False),
    ],
)
def test_the_4xx_metric_counts_only_the_keyless_routes_4xx(cfn, path, method, status, counted):
    pattern = cfn["Resources"]["ApiUnsubscribe4xxMetricFilter"]["Properties"]["FilterPattern"]
    line = _render(_stage(cfn)["AccessLogSetting"]["Format"], status, resourcePath=path, httpMethod=method)
    assert _filter_matches(pattern, line) is counted


def test_a_4xx_storm_on_unsubscribe_alarms_to_the_ops_topic(stack):
    """Deployed (moto): the filter on the access log group, the alarm on its metric, the logging role set."""
    logs = boto3.client("logs")
    group = stack.physical["ApiAccessLogGroup"]
    (described,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert described["retentionInDays"] == int(stack.template.sam["Parameters"]["LogRetentionDays"]["Default"])
    (metric_filter,) = logs.describe_metric_filters(logGroupName=group)["metricFilters"]
    (transformation,) = metric_filter["metricTransformations"]
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=[stack.physical["ApiUnsubscribe4xxAlarm"]])
    (alarm,) = alarms["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        transformation["metricNamespace"],
        transformation["metricName"],
    )
    assert transformation["metricValue"] == "1"  # one per answer: the alarm's Sum is a count of 4xx answers
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 100)
    assert alarm["AlarmActions"] == [stack.physical["OpsTopic"]] and alarm["TreatMissingData"] == "notBreaching"
    role = boto3.client("iam").get_role(RoleName=stack.physical["ApiGatewayCloudWatchRole"])["Role"]
    assert boto3.client("apigateway").get_account()["cloudwatchRoleArn"] == role["Arn"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}


def test_every_parameter_and_alarm_is_documented_for_the_operator():
    """docs/deploy.md's parameter table names every parameter with its default; docs/operations.md's
    alarm table every alarm the template defines (a new one lands with the line that says what to do)."""
    from redflag_local.standin.template import Template

    template = Template()
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for name, spec in template.sam["Parameters"].items():
        row = next((line for line in deploy.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name}: no row in docs/deploy.md's parameter table"
        default = str(spec.get("Default", ""))
        assert (f"`{default}`" in row) if default else ("empty" in row or "required" in row), (name, row)
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in template.resources("AWS::CloudWatch::Alarm"):
        assert f"| `{name}` |" in operations, f"{name}: no row in docs/operations.md's alarm table"
