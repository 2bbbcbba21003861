"""SES feedback on the deployed template (issue 15): SES's own documented records, about emails the alerts
function really sent, published through the configuration set's event destination as SES would. A hard
bounce or a complaint suppresses the address (the next red flag emails nobody, CS still hears of it, and
is told once why), a second bounce changes nothing, everything is counted once, nothing is lost."""

import copy
import json

import boto3

from redflag.core import unsubscribe
from redflag_local.standin.stack import SES_SENDS, Fault, LocalStack, sample_event
from tests.integration.test_users_api import erase

PAGE = {"label": "creating a landing page", "threshold_seconds": 600}
FEEDBACK = "SesEventsToStateFunction"
METRICS_ON = {"POWERTOOLS_METRICS_DISABLED": "false"}


def documented(name):
    """SES's documented record (events/ses_events_to_state/, the SNS message unwrapped)."""
    return json.loads(sample_event(f"ses_events_to_state/{name}.json")["Records"][0]["Sns"]["Message"])


def started(user, task="page"):
    return {"type": "task_started", "task": task, "user_id": user, "user": {"email": f"{user}@example.com"}}


def flag(stack, user, task="page"):
    """A red flag for ``user``: (emails sent, CS red-flag alerts) it added."""
    emails, cs = len(stack.emails()), len(red_flags(stack))
    stack.post_events(started(user, task))
    stack.tick(601)
    return len(stack.emails()) - emails, len(red_flags(stack)) - cs


def red_flags(stack):
    return [a for a in stack.cs_alerts() if a["message"].get("reason") != "email_suppressed"]


def notices(stack):
    return [a["message"] for a in stack.cs_alerts() if a["message"].get("reason") == "email_suppressed"]


def marker(stack, address):
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=stack.physical["UnsubscribeSecret"])
    key = unsubscribe.suppression_key(secret["SecretString"].encode(), "email", address)
    return stack.get_item(f"suppress#{key}", "suppress")


def outcomes(answers):
    return [(h["kind"], h["outcome"], h["notices"]) for a in answers for h in a["handled"]]


def counted(out):
    """Metric name -> total, from the EMF blobs the feedback function printed (Powertools, metrics on)."""
    totals = {}
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for d in blob["_aws"]["CloudWatchMetrics"]:
            for m in d["Metrics"]:
                value = blob[m["Name"]]
                totals[m["Name"]] = totals.get(m["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return totals


def test_a_hard_bounce_suppresses_the_address_cs_is_told_once_and_still_hears_of_red_flags(capsys, json_logs):
    with LocalStack(parameters={"QuietHours": "off"}, env_overrides=METRICS_ON) as stack:
        stack.put_rules({"page": PAGE, "page2": PAGE})
        assert flag(stack, "ada") == (1, 1)
        (sent_id,) = SES_SENDS
        assert SES_SENDS[sent_id]["ConfigurationSetName"] == stack.physical["EmailConfigurationSet"]
        # the set publishes clicks, so SES rewrites links for tracking: never the unsubscribe link
        assert '<a ses:no-track href="https://localapi.' in stack.emails()[0]["html"]
        capsys.readouterr()

        bounce = stack.ses_event(documented("bounce_permanent"))
        assert outcomes(stack.publish_ses_event(bounce)) == [("bounce_permanent", "suppressed", 1)]
        kept = marker(stack, "ada@example.com")
        assert (kept["reason"], float(kept["at"])) == ("bounce", 1501893662.669)  # when SES says it bounced
        (notice,) = notices(stack)
        assert (notice["user_id"], notice["email"], notice["suppression"]) == ("ada", "ada@example.com", "bounce")

        second = copy.deepcopy(bounce)  # another email bounced the same way: a new feedback id
        second["bounce"] |= {"feedbackId": "0100EXAMPLE-second-bounce", "timestamp": "2017-09-01T00:00:00.000Z"}
        assert outcomes(stack.publish_ses_event(second)) == [("bounce_permanent", "already_suppressed", 0)]
        assert marker(stack, "ada@example.com") == kept and len(notices(stack)) == 1

        assert flag(stack, "ada", "page2") == (0, 1)  # the next red flag: no email, CS still told
        assert len(notices(stack)) == 1
        assert erase(stack, "ada").status == 200  # erasure keeps the suppression
        assert marker(stack, "ada@example.com") == kept

        metrics = counted(capsys.readouterr().out)
        assert metrics["SesBouncePermanent"] == 2 and metrics["EmailAddressesSuppressed"] == 1
        assert metrics["AlertsSentCS"] >= 2  # the notice, and the red flag's CS alert
        lines = [json.dumps(line) for line in json_logs()]
        assert any("bounce_permanent" in line for line in lines)
        assert not [line for line in lines if "ada@example.com" in line]


def test_a_transient_bounce_suppresses_nothing_a_complaint_does_and_the_rest_is_counted(capsys):
    with LocalStack(parameters={"QuietHours": "off"}, env_overrides=METRICS_ON) as stack:
        stack.put_rules({"page": PAGE, "page2": PAGE})
        for user in ("bob", "cy"):
            assert flag(stack, user) == (1, 1)
        bob, cy = 0, 1  # their emails, in emails()
        capsys.readouterr()

        answers = stack.publish_ses_event(stack.ses_event(documented("bounce_transient"), bob))
        assert outcomes(answers) == [("bounce_transient", "counted", 0)] and marker(stack, "bob@example.com") is None
        for name in ("delivery", "click", "delivery_delay"):
            stack.publish_ses_event(stack.ses_event(documented(name), cy))
        answers = stack.publish_ses_event(stack.ses_event(documented("complaint"), bob))
        assert outcomes(answers) == [("complaint", "suppressed", 1)]
        assert marker(stack, "bob@example.com")["reason"] == "complaint"
        # SES refused a send to an address on its own suppression list: counted as that, not as a bounce
        answers = stack.publish_ses_event(stack.ses_event(documented("bounce_on_suppression_list"), cy))
        assert outcomes(answers) == [("ses_suppressed", "suppressed", 1)]
        assert marker(stack, "cy@example.com")["reason"] == "ses_suppression_list"

        metrics = counted(capsys.readouterr().out)
        for name in ("SesBounceTransient", "SesDelivery", "SesClick", "SesDeliveryDelay", "SesComplaint",
                     "SesOnSuppressionList"):  # fmt: skip
            assert metrics[name] == 1, name
        assert "SesBouncePermanent" not in metrics and metrics["EmailAddressesSuppressed"] == 2
        assert sorted((n["user_id"], n["suppression"]) for n in notices(stack)) == [
            ("bob", "complaint"),
            ("cy", "ses_suppression_list"),
        ]
        assert flag(stack, "bob", "page2") == (0, 1) and flag(stack, "cy", "page2") == (0, 1)


def test_a_feedback_that_fails_is_retried_then_kept_and_applying_it_later_changes_nothing_twice():
    with LocalStack(parameters={"QuietHours": "off"}) as stack:
        stack.put_rules({"page": PAGE})
        flag(stack, "dee")
        bounce = stack.ses_event(documented("bounce_permanent"))
        down = Fault("sns", "Publish", code="InternalError", status=500, rate=1.0, body_contains="email_suppressed")
        with stack.faults(down):
            assert stack.publish_ses_event(bounce) == []  # three attempts, all failed
        assert marker(stack, "dee@example.com")["reason"] == "bounce"  # the address is safe already
        assert notices(stack) == []
        sqs = boto3.client("sqs")
        queue = stack.physical["SesEventsDeadLetterQueue"]
        (kept,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        failed = json.loads(kept["Body"])
        assert failed["requestContext"]["condition"] == "RetriesExhausted"
        for _ in range(2):  # applied from the queue once the topic is back, and once more by mistake
            assert outcomes([stack.invoke(FEEDBACK, failed["requestPayload"])]) == [
                ("bounce_permanent", "suppressed", 1)
            ]
        assert [n["user_id"] for n in notices(stack)] == ["dee"]


def test_only_this_stacks_configuration_set_feeds_the_function_and_the_reputation_alarms_fire_before_review(stack):
    config_set = stack.physical["EmailConfigurationSet"]
    got = boto3.client("sesv2").get_configuration_set(ConfigurationSetName=config_set)
    assert got["ReputationOptions"]["ReputationMetricsEnabled"] is True
    assert sorted(got["SuppressionOptions"]["SuppressedReasons"]) == ["BOUNCE", "COMPLAINT"]
    assert stack.function_env["TimersToAlertsFunction"]["EMAIL_CONFIGURATION_SET"] == config_set

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    destination = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].config_set_event_destination[config_set]
    assert sorted(destination["MatchingEventTypes"]) == sorted(
        ["SEND", "BOUNCE", "COMPLAINT", "DELIVERY", "REJECT", "RENDERING_FAILURE", "DELIVERY_DELAY", "CLICK"]
    )
    topic = destination["SnsDestination"]["TopicARN"]
    assert topic == stack.physical["SesEventsTopic"]
    functions = stack.template.resources("AWS::Serverless::Function").items()
    subscribed = [f for f, res in functions for e in res["Properties"].get("Events", {}).values()
                  if e["Type"] == "SNS" and e["Properties"]["Topic"] == {"Ref": "SesEventsTopic"}]  # fmt: skip
    assert subscribed == [FEEDBACK]
    policy = json.loads(boto3.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["AWS:SourceArn"].endswith(f":configuration-set/{config_set}")

    alarms = {a["MetricName"]: a for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
              if a["Namespace"] == "AWS/SES"}  # fmt: skip
    review = {"Reputation.BounceRate": 0.05, "Reputation.ComplaintRate": 0.001}  # AWS puts the account under review
    assert set(alarms) == set(review)
    for name, alarm in alarms.items():
        assert 0 < alarm["Threshold"] < review[name], name
        assert alarm["Dimensions"] == [{"Name": "ses:configuration-set", "Value": config_set}]
        assert alarm["AlarmActions"] == [stack.physical["OpsTopic"]]
