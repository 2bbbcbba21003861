"""DynamoDB stream -> red flags -> email (SES) and CS alert (SNS), with partial batch failures."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.wiring import alerting_service
from redflag.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, model=DynamoDBStreamRecordModel)
service, sender = alerting_service()


def record_handler(record: DynamoDBStreamRecordModel) -> None:
    change = record.dynamodb
    by_ttl = record.userIdentity is not None  # the model only admits the DynamoDB service identity
    sent = service.handle_change(record.eventName, by_ttl, change.OldImage, change.NewImage)  # type: ignore[arg-type]
    logger.info("stream record", extra={"event_name": record.eventName, "keys": change.Keys, "alerts": len(sent)})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    sender.config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
