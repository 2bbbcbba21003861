"""The Slack notifier on the deployed template: subscribed to the CS topic, it really POSTs to an
incoming webhook (a server on 127.0.0.1 here), once per CS alert, whatever SNS and Lambda repeat;
Slack's 429 is waited out, a refusal is parked at once, an outage is parked after Lambda's retries,
and `redflag dlq replay` posts what was parked, once."""

import json

import boto3
import pytest

from redflag_local.ops import dlq
from redflag_local.standin.receiver import Answer, Receiver
from redflag_local.standin.stack import LocalStack
from tests.integration.conftest import SLACK, target_of

PAGE = {"label": "creating a landing page", "threshold_seconds": 600}
PARAMETERS = {
    "SlackWebhookParameter": "/redflag/slack-webhook",
    "CsLinkTemplate": "https://admin.example.com/users/{user_id}",
    "QuietHours": "off",
}


@pytest.fixture
def slack():
    with Receiver() as receiver, LocalStack(parameters=PARAMETERS) as stack:
        stack.put_slack_webhook(receiver.url("/services/T000/B000/XXXX"))
        stack.put_rules({"page": PAGE})
        yield stack, receiver


def flag(stack, user="ada", name="Ada Lovelace", **info):
    event = {"type": "task_started", "task": "page", "user_id": user, "user": {"email": f"{user}@example.com",
             "name": name} | info, "properties": {"plan": "<!here> & more"}}  # fmt: skip
    status, body = stack.post_events(event)
    assert status == 202, body
    stack.tick(601)


def posted(receiver):
    return [json.loads(p.body) for p in receiver.delivered("/services/T000/B000/XXXX")]


def queue(stack):
    return dlq.peek(boto3.client("sqs"), stack.physical["AlertsDeadLetterQueue"])


def test_a_cs_alert_becomes_one_block_kit_post_where_a_hostile_name_pings_nobody(slack):
    stack, receiver = slack
    flag(stack, name="<!channel> <b>x</b>", account_id="acme")
    assert len(stack.cs_alerts()) == 1
    (message,) = posted(receiver)
    raw = json.dumps(message)
    assert "<!channel>" not in raw and "<!here>" not in raw and "<b>" not in raw
    assert "&lt;!channel&gt; &lt;b&gt;x&lt;/b&gt; (ada)" in raw and "&amp;amp;" not in raw
    fields = [f["text"] for f in message["blocks"][2]["fields"]]
    assert "*Task*\ncreating a landing page" in fields and "*Account*\nacme" in fields
    assert message["blocks"][-1]["elements"][0]["url"] == "https://admin.example.com/users/ada"
    (post,) = receiver.posts
    assert post.headers["Content-Type"] == "application/json"
    assert queue(stack) == []


def test_slack_429_is_waited_out_and_a_redelivered_message_posts_once(slack):
    stack, receiver = slack
    receiver.answers[:] = [Answer(429, {"Retry-After": "1"})]
    flag(stack)
    assert [p.status for p in receiver.posts] == [429, 200]
    assert len(posted(receiver)) == 1
    # SNS delivers at least once, and Lambda retries an invoke that timed out after posting
    topic = stack.physical["AlertTopic"]
    alert = stack.cs_alerts()[0]
    from moto.sns.models import sns_backends

    (sent,) = sns_backends["123456789012"]["us-east-1"].topics[topic].sent_notifications
    record = stack._sns_record(topic, sent[0], sent[1], sent[2], sent[3])
    assert stack.invoke(SLACK, {"Records": [record]}) == {"posted": 0, "duplicate": 1, "rejected": 0}
    assert len(posted(receiver)) == 1 and alert["message"]["user_id"] == "ada"


def test_a_refusal_is_parked_at_once_and_an_outage_after_lambdas_retries(slack):
    stack, receiver = slack
    receiver.answers[:] = [Answer(404, body=b"no_service")]
    flag(stack, user="refused")
    assert [p.status for p in receiver.posts] == [404]  # not retried: Slack would say the same again
    (parked,) = queue(stack)
    assert parked.kind == "slack_post" and parked.body["error"] == "Http404"
    assert "no_service" not in json.dumps(parked.body)

    receiver.answers[:] = [Answer(503)] * 9
    flag(stack, user="outage")
    assert [p.status for p in receiver.posts[1:]] == [503] * 9  # 3 attempts an invoke, 3 invokes
    kinds = sorted((p.kind, p.body["requestContext"]["condition"]) for p in queue(stack))
    assert kinds == [("slack_post", "Rejected"), ("slack_post", "RetriesExhausted")]
    assert posted(receiver) == []


def test_replay_posts_what_was_parked_once_and_keeps_what_slack_refuses_again(slack):
    stack, receiver = slack
    receiver.answers[:] = [Answer(410, body=b"channel_is_archived")]
    flag(stack, user="archived")
    receiver.answers[:] = [Answer(503)] * 9
    flag(stack, user="outage")
    target = target_of(stack)  # as `redflag dlq` sees a deployed stack
    receiver.answers[:] = [Answer(410), Answer(200)]  # oldest first: the channel is still archived; the outage is over
    results = sorted((r.ok, r.why) for r in dlq.replay(target))
    assert results == [(False, "Slack refused it again; left in the queue"), (True, "posted to Slack")]
    assert [m["blocks"][2]["fields"][0]["text"] for m in posted(receiver)] == ["*User*\nAda Lovelace (outage)"]
    assert len(queue(stack)) == 1  # the refused one, once (its new copy dropped)
    receiver.answers[:] = []
    assert [(r.ok, r.why) for r in dlq.replay(target)] == [(True, "posted to Slack")]
    assert dlq.replay(target) == [] and len(posted(receiver)) == 2


def test_without_a_webhook_parameter_there_is_no_notifier():
    with LocalStack() as stack:
        assert SLACK not in stack.functions and SLACK not in stack.physical
        alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
        assert not [a for a in alarms if "Slack" in a["AlarmName"]]


def test_with_one_the_notifier_is_subscribed_retried_and_alarmed(slack):
    stack, _ = slack
    lam = boto3.client("lambda")
    config = lam.get_function_event_invoke_config(FunctionName=stack.physical[SLACK])
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"].endswith(":" + stack.physical[
        "AlertsDeadLetterQueue"].rsplit("/", 1)[-1])  # fmt: skip
    subscribed = stack.template.function_event(SLACK, "SNS")
    assert subscribed["Topic"] == {"Ref": "AlertTopic"}
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    (alarm,) = [a for a in alarms if a["Dimensions"] == [{"Name": "FunctionName", "Value": stack.physical[SLACK]}]]
    assert alarm["AlarmActions"] == [stack.physical["OpsTopic"]]
