"""`redflag dlq list|replay`: both kinds of parked message produced for real on the template deployed
into moto (a provider refusing an alert; a channel failing until the stream parks its batch), the
cause fixed, then replayed through the alerts function: each alert goes out exactly once, a message
is deleted only when its records went through, and one that fails again stays."""

import io
import json
from datetime import UTC, datetime

import boto3
import pytest
from typer.testing import CliRunner

from redflag_local.cli import app
from redflag_local.ops import dlq
from redflag_local.standin.stack import Fault
from tests.integration.conftest import ALERTS, completed, started, target_of

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
REFUSED = Fault("sesv2", "SendEmail", "MessageRejected", 400, rate=1.0)
SNS_DOWN = Fault("sns", "Publish", "InternalError", 500, rate=1.0)


def queue(stack):
    return dlq.peek(boto3.client("sqs"), stack.physical["AlertsDeadLetterQueue"])


def park_again(stack, message):
    """The same message once more (SQS delivers at least once; an operator may replay twice)."""
    boto3.client("sqs").send_message(QueueUrl=stack.physical["AlertsDeadLetterQueue"], MessageBody=json.dumps(message))


def emails_to(stack, user):
    return [e for e in stack.emails() if e["message"]["X-RedFlag-Alert"].startswith(f"{user}/")]


def cs_for(stack, user):
    return [a for a in stack.cs_alerts() if a["message"]["user_id"] == user]


def refused_alert(stack, user="u-rej"):
    """SES refuses the user's email for good: the CS alert goes out, the email is parked."""
    stack.post_events(started(user, f"{user}@example.com", "Ada Lovelace"))
    with stack.faults(REFUSED):
        stack.tick(901)
    assert len(cs_for(stack, user)) == 1 and emails_to(stack, user) == []


def exhausted_batch(stack, user="u-sb", **tick):
    """SNS fails on every attempt: the stream retries the record until the mapping parks its batch."""
    stack.post_events(started(user, f"{user}@example.com", "Grace Hopper"))
    with stack.faults(SNS_DOWN):
        stack.tick(901, **tick)
    assert cs_for(stack, user) == []


# --- a rejected alert ---------------------------------------------------------------------------


def test_a_refused_email_is_sent_once_when_replayed_after_the_fix(stack):
    refused_alert(stack)
    (parked,) = queue(stack)
    assert parked.kind == "alert_rejected" and parked.body["error"] == "MessageRejected"

    (result,) = dlq.replay(target_of(stack))  # the cause is fixed: SES accepts the address now
    assert result.ok, result.why
    assert len(emails_to(stack, "u-rej")) == 1
    assert len(cs_for(stack, "u-rej")) == 1  # the CS alert, sent before, is not sent again
    assert queue(stack) == []

    park_again(stack, parked.body)  # the same message delivered twice, or replayed again
    (again,) = dlq.replay(target_of(stack))
    assert again.ok and "already sent" in again.why
    assert dlq.replay(target_of(stack)) == []
    assert len(emails_to(stack, "u-rej")) == 1 and len(cs_for(stack, "u-rej")) == 1
    assert queue(stack) == []


def test_an_alert_refused_again_keeps_its_message_and_no_copy(stack):
    refused_alert(stack)
    (parked,) = queue(stack)
    with stack.faults(REFUSED):
        (result,) = dlq.replay(target_of(stack))
    assert not result.ok and "refused again (MessageRejected)" in result.why
    assert [p.message_id for p in queue(stack)] == [parked.message_id]  # the function's new copy is gone
    assert emails_to(stack, "u-rej") == []

    (result,) = dlq.replay(target_of(stack))
    assert result.ok and len(emails_to(stack, "u-rej")) == 1 and queue(stack) == []


def test_an_alert_of_a_run_that_is_gone_or_moved_on_stays_parked(stack):
    refused_alert(stack, "u-gone")
    refused_alert(stack, "u-again")
    stack.delete_item("u-gone", "task#create_landing_page#default")
    stack.post_events(started("u-again", "u-again@example.com"))  # a new run of the same task
    results = {r.parked.body["alert"][0]: r for r in dlq.replay(target_of(stack))}
    assert not results["u-gone"].ok and "the timer is gone" in results["u-gone"].why
    assert not results["u-again"].ok and "another run" in results["u-again"].why
    assert len(queue(stack)) == 2 and stack.emails() == []


def test_a_refused_usage_drop_alert_is_replayed_from_its_account_flag(stack):
    """The weekly check's flag item (written here as it writes it) raises a CS alert; SNS refuses it
    for good (the topic's KMS key policy, say) until that is fixed."""
    from boto3.dynamodb.types import TypeSerializer

    from redflag.adapters.codec import account_flag_item
    from redflag.kinds import Rule
    from redflag.kinds.usage_drop import AccountFlag

    rule = Rule.model_validate(
        {"kind": "usage_drop", "label": "weekly usage", "drop_percent": 50, "notify": ["cs"], "min_weekly_actives": 5}
    )
    flag = AccountFlag(
        account_id="acme", task="weekly_usage", week="2027-W02", actives_before=10, actives_after=3,
        rule=rule, flagged_at=stack.clock(),
    )  # fmt: skip
    item = {k: TypeSerializer().serialize(v) for k, v in account_flag_item(flag, 30 * 86400).items()}
    stack.ddb.put_item(TableName=stack.table_name, Item=item)
    with stack.faults(Fault("sns", "Publish", "KMSAccessDenied", 400, rate=1.0)):
        stack.tick(1)
    (parked,) = queue(stack)
    assert parked.body["alert"][:2] == ["account:acme", "weekly_usage"] and parked.body["error"] == "KMSAccessDenied"
    assert parked.summary() == "cs alert for account acme, rule weekly_usage, week 2027-W02: KMSAccessDenied"

    (result,) = dlq.replay(target_of(stack))
    assert result.ok, result.why
    assert [a["message"]["account_id"] for a in stack.cs_alerts()] == ["acme"]
    park_again(stack, parked.body)
    assert [r.ok for r in dlq.replay(target_of(stack))] == [True]
    assert len(stack.cs_alerts()) == 1 and queue(stack) == []


# --- a stream batch that ran out of retries -----------------------------------------------------


def test_an_exhausted_stream_batch_is_replayed_once_sns_is_back(stack):
    exhausted_batch(stack)
    assert len(emails_to(stack, "u-sb")) == 1  # the email went out on the first attempt
    (parked,) = queue(stack)
    assert parked.kind == "stream_batch"
    info = parked.body["DDBStreamBatchInfo"]

    # the stream API's records line up with what the event source mapping delivered
    records = dlq.stream_records(target_of(stack), info)
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == [info["startSequenceNumber"]]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] and info["batchSize"] == 1
    (record,) = records
    assert record["eventName"] == "MODIFY" and record["dynamodb"]["Keys"]["pk"] == {"S": "u-sb"}
    assert record["dynamodb"]["NewImage"]["state"] == {"S": "flagged"}
    assert record["eventSourceARN"] == stack.stream_arn

    with stack.faults(SNS_DOWN):  # not fixed yet: the replay fails and the message stays
        (result,) = dlq.replay(target_of(stack))
    assert not result.ok and "failed again" in result.why
    assert [p.message_id for p in queue(stack)] == [parked.message_id]

    (result,) = dlq.replay(target_of(stack))
    assert result.ok, result.why
    assert len(cs_for(stack, "u-sb")) == 1 and len(emails_to(stack, "u-sb")) == 1
    assert queue(stack) == []

    park_again(stack, parked.body)
    (again,) = dlq.replay(target_of(stack))
    assert again.ok
    assert len(cs_for(stack, "u-sb")) == 1 and len(emails_to(stack, "u-sb")) == 1
    assert queue(stack) == []


class StreamsApi:
    """moto's DynamoDB Streams client, with the ``userIdentity`` the real API puts on a TTL delete
    (``PrincipalId``/``Type``, not the Lambda event's names); moto's stream knows nothing of TTL."""

    def __init__(self, client):
        self.client = client

    def get_shard_iterator(self, **kwargs):
        return self.client.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs):
        page = self.client.get_records(**kwargs)
        for record in page["Records"]:
            if record["eventName"] == "REMOVE":
                record["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
        return page


def test_a_ttl_delete_in_a_parked_batch_is_a_red_flag_on_replay(stack):
    """TTL, not the sweeper, caught this timer: its record is a REMOVE whose TTL identity the replay
    must hand over in the Lambda event's shape, or the function would not see a red flag."""
    exhausted_batch(stack, "u-ttl", sweep=False, ttl_lateness=0)
    (parked,) = queue(stack)
    (record,) = dlq.stream_records(
        target_of(stack, StreamsApi(boto3.client("dynamodbstreams"))), parked.body["DDBStreamBatchInfo"]
    )
    assert record["eventName"] == "REMOVE"
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)  # JSON, as Lambda sends it

    (result,) = dlq.replay(target_of(stack, StreamsApi(boto3.client("dynamodbstreams"))))
    assert result.ok, result.why
    assert len(cs_for(stack, "u-ttl")) == 1 and len(emails_to(stack, "u-ttl")) == 1
    assert queue(stack) == []


def test_a_batch_range_holds_records_the_filter_drops(stack):
    """A batch's first..last sequence numbers span every change in between (starts, completions);
    only the red flags the mapping's filter passes are sent, and all of them must be found."""
    stack.post_events({"events": [started("r-1", "r1@example.com"), started("r-2", "r2@example.com")]})
    stack.post_events({"events": [started("r-3"), completed("r-3")]})
    stack.clock.advance(901)
    stack.sweep()
    records = stack.read_stream()  # consumed here, so nothing alerts before the replay
    flags = stack.filter_stream(records)
    assert {r["dynamodb"]["Keys"]["pk"]["S"] for r in flags} == {"r-1", "r-2"} and len(records) > len(flags)
    info = {
        "shardId": boto3.client("dynamodbstreams").describe_stream(StreamArn=stack.stream_arn)["StreamDescription"][
            "Shards"
        ][0]["ShardId"],
        "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
        "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
        "batchSize": len(flags),
        "streamArn": stack.stream_arn,
    }
    park_again(stack, {"requestContext": {"condition": "RetryAttemptsExhausted"}, "DDBStreamBatchInfo": info})
    (result,) = dlq.replay(target_of(stack))
    assert result.ok and result.why.startswith("2 record(s)")
    assert sorted(a["message"]["user_id"] for a in stack.cs_alerts()) == ["r-1", "r-2"]

    park_again(stack, {"DDBStreamBatchInfo": info | {"batchSize": 3}})  # one of its records is missing
    (result,) = dlq.replay(target_of(stack))
    assert not result.ok and "found 2 of its 3 records" in result.why and len(queue(stack)) == 1


def test_the_replay_filter_agrees_with_the_template(stack):
    stack.post_events({"events": [started(f"f-{i}", f"f{i}@example.com") for i in range(4)]})
    stack.post_events({"events": [completed("f-0"), {"type": "user_active", "task": "x", "user_id": "f-1"}]})
    stack.clock.advance(901)
    stack.sweep()
    stack.ttl_delete("f-1", "task#create_landing_page#default")  # a flagged timer: not a red flag
    stack.post_events(started("f-9"))
    stack.clock.advance(901)
    stack.expire_ttl()  # an open one: a red flag
    records = stack.read_stream()
    patterns = tuple(stack.template.stream_filters(ALERTS))
    expected = [r["dynamodb"]["SequenceNumber"] for r in stack.filter_stream(records)]
    assert [r["dynamodb"]["SequenceNumber"] for r in records if dlq.passes(patterns, r)] == expected
    assert len(expected) == 4 and len(records) > 4  # f-1, f-2, f-3 flagged; f-9 deleted by TTL while open
    assert dlq.passes((), records[0])  # no filter known: everything goes to the function, which re-checks
    assert dlq.passes(({"eventName": [{"prefix": "MOD"}]},), records[0])  # an operator not modelled: let it through


# --- choosing, and what is not ours ---------------------------------------------------------------


def test_replay_only_the_chosen_messages(stack):
    refused_alert(stack)
    exhausted_batch(stack)
    by_kind = {p.kind: p for p in queue(stack)}
    assert set(by_kind) == {"alert_rejected", "stream_batch"}

    (result,) = dlq.replay(target_of(stack), kinds={"stream_batch"})
    assert result.ok and result.parked.kind == "stream_batch"
    assert [p.message_id for p in queue(stack)] == [by_kind["alert_rejected"].message_id]

    assert dlq.replay(target_of(stack), only={"no-such-message"}) == []
    (result,) = dlq.replay(target_of(stack), only={by_kind["alert_rejected"].message_id})
    assert result.ok and queue(stack) == []


def test_a_message_that_is_not_ours_is_listed_without_its_content_and_kept(stack):
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.physical["AlertsDeadLetterQueue"], MessageBody="ada@example.com was here")
    park_again(stack, {"email": "grace@example.com", "note": "x"})
    messages = queue(stack)
    assert [p.kind for p in messages] == ["unknown", "unknown"]
    assert not [p for p in messages if "@" in p.summary()]
    park_again(stack, {"DDBStreamBatchInfo": {"startSequenceNumber": "1"}})  # no shard: malformed
    results = dlq.replay(target_of(stack))
    assert [r.ok for r in results] == [False, False, False] and len(queue(stack)) == 3
    assert sum("malformed" in r.why for r in results) == 1


# --- against a deployed stack: resolved from CloudFormation, invoked through Lambda --------------------


def test_the_stack_is_resolved_from_its_cloudformation_resources(stack):
    target = dlq.stack_target(boto3.Session(), "redflag", wait_seconds=0)
    assert target.queue_url == stack.physical["AlertsDeadLetterQueue"]
    assert target.table_name == stack.table_name
    assert target.idempotency_table == stack.physical["IdempotencyTable"]
    assert target.stream_arn == stack.stream_arn
    with pytest.raises(dlq.DlqError, match="no-such-stack"):
        dlq.stack_target(boto3.Session(), "no-such-stack")


class FakeLambda:
    def __init__(self, answer, error=None):
        self.answer, self.error, self.calls = answer, error, []

    def invoke(self, **kwargs):
        self.calls.append(kwargs)
        out = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.answer).encode())}
        return out | ({"FunctionError": self.error} if self.error else {})


def test_the_lambda_invoker_reports_function_errors_and_partial_failures():
    event = {"Records": [{"dynamodb": {"ApproximateCreationDateTime": 1.5}}]}
    ok = FakeLambda({"batchItemFailures": []})
    assert dlq.lambda_invoker(ok, "fn")(event) == {"batchItemFailures": []}
    (call,) = ok.calls
    assert call["InvocationType"] == "RequestResponse" and json.loads(call["Payload"]) == event
    partial = FakeLambda({"batchItemFailures": [{"itemIdentifier": "7"}]})
    assert dlq.lambda_invoker(partial, "fn")(event)["batchItemFailures"] == [{"itemIdentifier": "7"}]
    crashed = FakeLambda({"errorMessage": "ada@example.com broke it"}, error="Unhandled")
    assert dlq.lambda_invoker(crashed, "fn")(event) == {"FunctionError": "Unhandled"}  # the message is dropped


def test_stream_api_records_are_handed_over_as_lambda_records():
    when = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    record = {
        "eventID": "1",
        "eventName": "REMOVE",
        "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
        "dynamodb": {"ApproximateCreationDateTime": when, "Keys": {"pk": {"B": b"\x00\x01"}}, "SequenceNumber": "9"},
    }
    out = dlq.lambda_record(record, "arn:aws:dynamodb:eu-west-1:1:table/t/stream/s")
    assert out["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert out["dynamodb"]["ApproximateCreationDateTime"] == when.timestamp()
    assert out["dynamodb"]["Keys"] == {"pk": {"B": "AAE="}}
    assert out["eventSourceARN"] == "arn:aws:dynamodb:eu-west-1:1:table/t/stream/s"
    json.dumps(out)


# --- the commands ---------------------------------------------------------------------------------


def test_dlq_list_shows_ids_kinds_and_codes_never_addresses(stack, monkeypatch):
    monkeypatch.setattr(dlq, "stack_target", lambda *args, **kwargs: target_of(stack))
    result = runner.invoke(app, ["dlq", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "the dead-letter queue is empty" in result.output

    refused_alert(stack)
    exhausted_batch(stack)
    result = runner.invoke(app, ["dlq", "list", "--stack-name", "redflag"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    for p in queue(stack):
        assert p.message_id in out and p.kind in out
    assert "user alert for user u-rej, task create_landing_page/default" in out and "MessageRejected" in out
    assert "1 stream record(s)" in out and "RetryAttemptsExhausted" in out
    assert "2 message(s): 1 alert_rejected, 1 stream_batch" in out
    assert "@" not in out and "Ada" not in out and "Grace" not in out
    assert len(queue(stack)) == 2  # listing removes nothing


def test_dlq_replay_command(stack, monkeypatch):
    monkeypatch.setattr(dlq, "stack_target", lambda *args, **kwargs: target_of(stack))
    refused_alert(stack)
    exhausted_batch(stack)
    (batch,) = [p for p in queue(stack) if p.kind == "stream_batch"]

    with stack.faults(SNS_DOWN):
        result = runner.invoke(app, ["dlq", "replay", "--kind", "stream_batch"], env=WIDE)
    assert result.exit_code == 1
    assert f"left     {batch.message_id} (stream_batch): 1 of 1 records failed again" in result.output
    assert "0 replayed, 1 left in the queue" in result.output

    result = runner.invoke(app, ["dlq", "replay", "--id", batch.message_id, "--id", "gone"], env=WIDE)
    assert result.exit_code == 1  # one asked for is not in the queue
    assert f"replayed {batch.message_id} (stream_batch)" in result.output and "gone" in result.output

    result = runner.invoke(app, ["dlq", "replay"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "1 replayed, 0 left in the queue" in result.output
    assert queue(stack) == [] and len(stack.emails()) == 2 and len(stack.cs_alerts()) == 2

    result = runner.invoke(app, ["dlq", "replay", "--kind", "nonsense"], env=WIDE)
    assert result.exit_code == 2
