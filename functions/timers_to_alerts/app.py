"""DynamoDB stream -> red flags (timers, account usage drops) -> email (SES) and CS alert (SNS).

A record that fails (a channel could not deliver now) is logged once, with its keys and the error
class, and reported to the event source mapping, which retries it (bisecting the batch) and parks
it in the dead-letter queue once retries run out.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag import clock
from redflag.adapters.items import account_flag_of, timer_of
from redflag.adapters.wiring import alerting_service
from redflag.alerting import ChannelsFailed
from redflag.observability import logger, metrics, tracer

processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, model=DynamoDBStreamRecordModel, raise_on_entire_batch_failure=False
)
service, sender = alerting_service()


def record_handler(record: DynamoDBStreamRecordModel) -> None:
    change = record.dynamodb
    keys = {k: v for k, v in (change.Keys or {}).items() if k in ("pk", "sk")}
    by_ttl = record.userIdentity is not None  # the model only admits the DynamoDB service identity
    try:
        if flag := account_flag_of(change.NewImage):  # type: ignore[arg-type]
            sent = service.handle_account_flag(record.eventName, flag)
        else:
            old, new = timer_of(change.OldImage), timer_of(change.NewImage)  # type: ignore[arg-type]
            sent = service.handle_change(record.eventName, by_ttl, old, new, clock.SYSTEM.now())
    except ChannelsFailed as exc:
        errors = {f.channel: f.error for f in exc.failures}
        logger.warning("record failed; will be retried", extra={"keys": keys, "errors": errors})
        metrics.add_metric(name="AlertChannelFailures", unit="Count", value=len(exc.failures))
        raise
    except Exception as exc:
        logger.error("record failed; will be retried", extra={"keys": keys, "error": type(exc).__name__})
        raise
    if sent:
        logger.info("red flag", extra={"keys": keys, "channels": [a.channel for a in sent]})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    sender.config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
