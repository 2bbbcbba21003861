"""The hardened template: data kept, topics encrypted, failures alarmed to the ops topic.

What moto cannot show (deletion policies, PITR, key policies) is read from template.yaml; the
rest is checked on the stack moto deployed from it.
"""

import copy

import boto3
import pytest
from samtranslator.translator.transform import transform

from redflag_local.standin.stack import LocalStack
from redflag_local.standin.template import Template, _NoManagedPolicies

TABLES = ["TimersTable", "IdempotencyTable"]
TOPICS = ["AlertTopic", "OpsTopic"]


@pytest.fixture(scope="module")
def template():
    return Template()


@pytest.mark.parametrize("table", TABLES)
def test_tables_keep_their_data(template, table):
    res = template.sam["Resources"][table]
    assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert res["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert res["Properties"]["SSESpecification"] == {"SSEEnabled": True}


def test_every_stateful_resource_says_what_happens_to_it(template):
    # cfn-lint I3011's stateful types that this template uses
    stateful = {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::KMS::Key"}
    for name, res in template.sam["Resources"].items():
        if res["Type"] in stateful:
            assert {"DeletionPolicy", "UpdateReplacePolicy"} <= res.keys(), name


def test_topics_are_encrypted_with_the_stacks_rotating_key(template, stack):
    for topic in TOPICS:
        assert template.sam["Resources"][topic]["Properties"]["KmsMasterKeyId"] == {"Ref": "TopicKey"}
    key_id = stack.physical["TopicKey"]
    sns = boto3.client("sns")
    for topic in TOPICS:
        assert sns.get_topic_attributes(TopicArn=stack.physical[topic])["Attributes"]["KmsMasterKeyId"] == key_id
    assert boto3.client("kms").get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True


def test_cloudwatch_and_the_alerts_function_may_use_the_topic_key(template):
    policy = template.sam["Resources"]["TopicKey"]["Properties"]["KeyPolicy"]
    services = [s for s in policy["Statement"] if "Service" in s["Principal"]]
    assert any(
        "cloudwatch.amazonaws.com" in s["Principal"]["Service"]
        and {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(s["Action"])
        and s["Effect"] == "Allow"
        for s in services
    )
    policies = template.sam["Resources"]["TimersToAlertsFunction"]["Properties"]["Policies"]
    assert any("SNSPublishMessagePolicy" in p for p in policies)
    statements = [s for p in policies for s in p.get("Statement", [])]
    assert any(
        {"kms:GenerateDataKey", "kms:Decrypt"} <= set(s["Action"])
        and s["Resource"] == {"Fn::GetAtt": ["TopicKey", "Arn"]}
        for s in statements
    )


def _alarms(stack):
    """(namespace, metric, dimensions) -> alarm, for every alarm moto holds."""
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return {
        (a["Namespace"], a["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in a["Dimensions"]))): a
        for a in alarms
    }


def test_failures_alarm_to_the_ops_topic(template, stack):
    alarms = _alarms(stack)
    fn = stack.physical
    queue_name = fn["AlertsDeadLetterQueue"].rsplit("/", 1)[-1]
    ses_queue = fn["SesEventsDeadLetterQueue"].rsplit("/", 1)[-1]
    expected = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", queue_name),)): 0,
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", ses_queue),)): 0,
        ("AWS/Lambda", "IteratorAge", (("FunctionName", fn["TimersToAlertsFunction"]),)): 60000,
        ("AWS/ApiGateway", "5XXError", (("ApiName", "redflag"), ("Stage", "Prod"))): 0,
        ("RedFlag", "Unsubscribe4xx", ()): 100,  # from the API access log (test_template.py)
    } | {("AWS/Lambda", "Errors", (("FunctionName", fn[name]),)): 0 for name in stack.functions}
    assert len(stack.functions) >= 3  # every deployed function has its errors alarm, whatever is added
    for key, threshold in expected.items():
        assert key in alarms, f"no alarm on {key}"
        alarm = alarms[key]
        assert alarm["AlarmActions"] == [fn["OpsTopic"]]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", threshold)
        assert alarm["TreatMissingData"] == "notBreaching"
    assert alarms[("AWS/Lambda", "IteratorAge", (("FunctionName", fn["TimersToAlertsFunction"]),))]["Statistic"] == (
        "Maximum"
    )
    # and nothing else but SES's reputation alarms (tests/integration/test_ses_feedback.py)
    assert len([k for k in alarms if k[0] != "AWS/SES"]) == len(expected)


def test_the_5xx_alarm_names_the_api_sam_creates(template):
    """The implicit API is named after the stack (its OpenAPI title) and deployed as stage Prod,
    the dimensions Api5xxAlarm watches (moto never sees the API: the copy drops its events)."""
    sam = copy.deepcopy(template.sam)
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            res["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    cfn = transform(sam, {"SenderEmail": "help@example.com"}, _NoManagedPolicies())["Resources"]
    assert cfn["ServerlessRestApi"]["Properties"]["Body"]["info"]["title"] == {"Ref": "AWS::StackName"}
    stages = [r["Properties"]["StageName"] for r in cfn.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stages == ["Prod"]
    dims = template.sam["Resources"]["Api5xxAlarm"]["Properties"]["Dimensions"]
    assert dims == [{"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}}, {"Name": "Stage", "Value": "Prod"}]


def _ops_subscriptions(stack):
    return boto3.client("sns").list_subscriptions_by_topic(TopicArn=stack.physical["OpsTopic"])["Subscriptions"]


def _reserved(stack):
    out = boto3.client("lambda").get_function_concurrency(FunctionName=stack.physical["TimersToAlertsFunction"])
    return out.get("ReservedConcurrentExecutions")


def test_by_default_no_ops_email_and_the_alerts_function_is_unreserved(stack):
    assert _ops_subscriptions(stack) == []
    assert "OpsEmailSubscription" not in stack.physical
    assert _reserved(stack) is None


def test_ops_email_and_reserved_concurrency_when_set():
    with LocalStack(parameters={"OpsEmail": "ops@example.com", "AlertsReservedConcurrency": "5"}) as s:
        subs = _ops_subscriptions(s)
        assert [(x["Protocol"], x["Endpoint"]) for x in subs] == [("email", "ops@example.com")]
        assert _reserved(s) == 5


@pytest.mark.parametrize(("value", "reserved"), [("", False), ("0", False), ("1", True), ("50", True)])
def test_empty_or_zero_reserved_concurrency_means_unreserved(template, value, reserved):
    assert template.condition("AlertsConcurrencyReserved", {"AlertsReservedConcurrency": value}) is reserved


def test_every_checkov_skip_gives_its_reason(template):
    skips = [
        (name, skip)
        for name, res in template.sam["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV_"), name
        assert len(skip.get("comment", "")) >= 60, f"{name} {skip['id']}: say why"


def test_outputs_name_the_ops_topic(template):
    assert template.sam["Outputs"]["OpsTopicArn"]["Value"] == {"Ref": "OpsTopic"}
    sub = template.sam["Resources"]["OpsEmailSubscription"]
    assert sub["Condition"] == "OpsEmailSet"
    assert sub["Properties"]["Endpoint"] == {"Ref": "OpsEmail"}
