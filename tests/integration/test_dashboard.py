"""The dashboard in template.yaml shows what issue 10 asks for, and only metrics the code emits."""

import json
import re

import boto3

from redflag.core.events import Outcome
from redflag_local.standin.stack import ROOT
from redflag_local.standin.template import Template

WANTED = {
    "events": {"EventsArmed", "EventsCompleted", "EventsRejected"},
    "flags by kind": {"RedFlagsTime", "RedFlagsFailures", "RedFlagsInactivity", "AccountsFlagged"},
    "emails": {"AlertsSentUSER", "EmailsCapped", "EmailsDeferred", "EmailsSuppressed"},
    "CS, Slack, webhook": {"AlertsSentCS", "SlackPosts", "AlertsSentWEBHOOK"},
    "completions after alert": {"CompletedAfterFlag"},
    "SES feedback": {
        *("SesSend", "SesDelivery", "SesBouncePermanent", "SesBounceTransient", "SesComplaint", "SesReject"),
        *("SesRenderingFailure", "SesDeliveryDelay", "SesClick", "SesOnSuppressionList"),
    },
}


def dashboard_metrics() -> set[tuple[str, str]]:
    body = Template().sam["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name, value in {"AWS::Region": "us-east-1", "EmailConfigurationSet": "cs", "BounceRateAlarmThreshold": "0.04",
                        "ComplaintRateAlarmThreshold": "0.0008"}.items():  # fmt: skip
        body = body.replace("${" + name + "}", value)
    widgets = json.loads(body)["widgets"]
    # Red Flag's own metrics (SES's reputation metrics, namespace AWS/SES, are SES's)
    return {(m[1], m[3]) for w in widgets for m in w["properties"]["metrics"] if m[0] == "RedFlag"}


def emitted_names() -> set[str]:
    """Metric names the code can emit: literal names, and the families built from a value."""
    code = "\n".join(
        p.read_text() for p in [*ROOT.glob("functions/*/app.py"), *ROOT.glob("layers/redflag/redflag/**/*.py")]
    )
    names = set(re.findall(r'name="([A-Za-z]+)"', code))
    names |= {f"Events{o.value.capitalize()}" for o in Outcome}
    names |= {f"RedFlags{r}" for r in ("Time", "Failures", "Inactivity")}
    names |= {f"Alerts{kind}{c}" for kind in ("Sent", "Rejected") for c in ("USER", "CS", "WEBHOOK")}
    names |= set(re.findall(r'"[a-z_]+": "([A-Za-z]+)"', code))  # the email outcome table
    return names


def test_the_dashboard_covers_events_flags_emails_cs_slack_webhook_and_completions_after_alert():
    shown = {name for name, _ in dashboard_metrics()}
    for what, names in WANTED.items():
        assert names <= shown, f"{what}: missing {names - shown}"


def test_every_metric_on_the_dashboard_is_one_the_code_emits_under_its_service():
    services = {res["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
                for res in Template().resources("AWS::Serverless::Function").values()}  # fmt: skip
    emitted = emitted_names()
    for name, service in dashboard_metrics():
        assert name in emitted, f"{name} is on the dashboard but nothing emits it"
        assert service in services, f"{name}: no function is service {service}"


def test_the_dashboard_deploys(stack):
    names = [d["DashboardName"] for d in boto3.client("cloudwatch").list_dashboards()["DashboardEntries"]]
    assert names == ["redflag-red-flag"]
