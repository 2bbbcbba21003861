"""DynamoDB stream -> red flags (timers, account usage drops, deferred emails) -> email (SES), CS alert
(SNS) and webhook, the whole batch at once, with partial batch failures.

The batch is parsed with Powertools' stream model, decoded into typed changes
(``redflag.adapters.stream``) and handed to the alerting service in one call (``redflag.services.alerting``:
per-user state read once and written once per user, every alert claimed and sent concurrently). A
record that failed (a channel could not deliver now, its state could not be written) is logged once,
with its keys and the error codes, and reported to the event source mapping (``batchItemFailures``),
which retries it and what follows it (bisecting the batch) and parks it in the dead-letter queue once
retries run out. Powertools' batch processor handles records one at a time, so the answer is built
here, in the shape it would build.
"""

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.adapters.stream import decode, record_id
from redflag.core import clock
from redflag.edge.wiring import alerting_service
from redflag.services.alerting import BatchOutcome, Handled
from redflag.services.changes import Change

service = alerting_service()
EMAIL_METRICS = {
    "held_out": "EmailsHeldOut",
    "suppressed": "EmailsSuppressed",
    "deferred": "EmailsDeferred",
    "capped": "EmailsCapped",
}


def _count(handled: Handled) -> None:
    """Metrics, once per red flag (a retried batch finds its red flags known) and once per send."""
    if handled.reason and handled.new and not handled.deferred:
        metrics.add_metric(name=f"RedFlags{handled.reason.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    if handled.email in EMAIL_METRICS and (handled.new or handled.deferred):
        metrics.add_metric(name=EMAIL_METRICS[handled.email], unit=MetricUnit.Count, value=1)
    for alert in handled.sent:
        metrics.add_metric(name=f"AlertsSent{alert.channel.upper()}", unit=MetricUnit.Count, value=1)
    for channel, _error in handled.rejected:
        metrics.add_metric(name=f"AlertsRejected{channel.upper()}", unit=MetricUnit.Count, value=1)
    if handled.failures:
        metrics.add_metric(name="AlertChannelFailures", unit=MetricUnit.Count, value=len(handled.failures))


def _log(keys: dict[str, str], handled: Handled) -> None:
    if handled.failures:
        errors = {f.channel: f.error for f in handled.failures}
        logger.warning("record failed; will be retried", extra={"keys": keys, "errors": errors})
    elif handled:
        channels = [a.channel for a in handled.alerts]
        logger.info("red flag", extra={"keys": keys, "channels": channels, "email": handled.email})
    for channel, error in handled.rejected:
        logger.warning("alert rejected and parked", extra={"keys": keys, "channel": channel, "error": error})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    batch = parse(event=event, model=DynamoDBStreamModel)
    now = clock.SYSTEM.now()
    deadline = now + context.get_remaining_time_in_millis() / 1000
    changes: list[tuple[str, Change]] = []
    keys: dict[str, dict[str, str]] = {}
    unreadable: list[str] = []
    for record in batch.Records:
        rid = record_id(record)
        keys[rid] = {k: str(v) for k, v in (record.dynamodb.Keys or {}).items() if k in ("pk", "sk")}
        try:
            changes.append((rid, decode(record)))
        except ValueError:
            unreadable.append(rid)
            logger.error("record failed; will be retried", extra={"keys": keys[rid], "error": "Unreadable"})
    outcome: BatchOutcome = service.handle(changes, now, deadline)
    for rid, handled in outcome.handled.items():
        _count(handled)
        _log(keys[rid], handled)
    if outcome.unrecorded:
        metrics.add_metric(name="AlertBookkeepingFailed", unit=MetricUnit.Count, value=outcome.unrecorded)
        logger.error("alerts sent but not recorded", extra={"alerts": outcome.unrecorded})
    failed = set(outcome.failed) | set(unreadable)
    order = [record_id(r) for r in batch.Records]
    return {"batchItemFailures": [{"itemIdentifier": rid} for rid in order if rid in failed]}
