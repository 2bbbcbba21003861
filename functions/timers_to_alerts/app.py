"""DynamoDB stream -> red flags (timers, account usage drops, deferred emails) -> email (SES), CS alert
(SNS) and webhook, with partial batch failures.

A record that fails (a channel could not deliver now) is logged once, with its keys and the error
class, and reported to the event source mapping, which retries it (bisecting the batch) and parks
it in the dead-letter queue once retries run out.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.codec import account_flag_of, deferred_of, timer_of
from redflag.adapters.observability import logger, metrics, tracer
from redflag.core import clock
from redflag.edge.wiring import alerting_service
from redflag.services.alerting import ChannelsFailed, Handled

processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, model=DynamoDBStreamRecordModel, raise_on_entire_batch_failure=False
)
service, sender, _store = alerting_service()
EMAIL_METRICS = {
    "held_out": "EmailsHeldOut",
    "suppressed": "EmailsSuppressed",
    "deferred": "EmailsDeferred",
    "capped": "EmailsCapped",
}


def _handle(record: DynamoDBStreamRecordModel) -> Handled:
    change = record.dynamodb
    by_ttl = record.userIdentity is not None  # the model only admits the DynamoDB service identity
    now = clock.SYSTEM.now()
    if flag := account_flag_of(change.NewImage):  # type: ignore[arg-type]
        return service.handle_account_flag(record.eventName, flag)
    kept = deferred_of(change.OldImage)  # type: ignore[arg-type]
    if kept is not None:
        due = record.eventName == "MODIFY" or (record.eventName == "REMOVE" and by_ttl)
        return service.handle_deferred(kept, now) if due else Handled()
    old, new = timer_of(change.OldImage), timer_of(change.NewImage)  # type: ignore[arg-type]
    handled = service.handle_change(record.eventName, by_ttl, old, new, now)
    if handled:
        reason = (new or old).flag_reason if (new or old) is not None else None  # type: ignore[union-attr]
        metrics.add_metric(name=f"RedFlags{(reason.value if reason else 'time').capitalize()}", unit="Count", value=1)
    return handled


def record_handler(record: DynamoDBStreamRecordModel) -> None:
    keys = {k: v for k, v in (record.dynamodb.Keys or {}).items() if k in ("pk", "sk")}
    try:
        handled = _handle(record)
    except ChannelsFailed as exc:
        errors = {f.channel: f.error for f in exc.failures}
        logger.warning("record failed; will be retried", extra={"keys": keys, "errors": errors})
        metrics.add_metric(name="AlertChannelFailures", unit="Count", value=len(exc.failures))
        raise
    except Exception as exc:
        logger.error("record failed; will be retried", extra={"keys": keys, "error": type(exc).__name__})
        raise
    if handled.email in EMAIL_METRICS:
        metrics.add_metric(name=EMAIL_METRICS[handled.email], unit="Count", value=1)
    if handled:
        channels = [a.channel for a in handled.alerts]
        logger.info("red flag", extra={"keys": keys, "channels": channels, "email": handled.email})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    sender.config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
