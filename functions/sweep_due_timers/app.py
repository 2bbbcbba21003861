"""Every minute (EventBridge schedule): flag open timers past due, well before TTL would.

One run makes SWEEPS_PER_MINUTE passes spread over the minute (default 3: every 20 s)."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag import clock
from redflag.adapters.wiring import sweep_service
from redflag.observability import logger, metrics, tracer

service = sweep_service()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict:
    report = service.run(clock.now, clock.sleep)
    metrics.add_metric(name="TimersFlagged", unit="Count", value=report.flagged)
    logger.info("sweep done", extra=report.model_dump())
    return report.model_dump()
