"""Each Monday (EventBridge schedule): every account's weekly active users against the week before;
a drop beyond a ``usage_drop`` rule's percentage becomes an account flag (written once), which the
timers stream takes to customer success. Reads nothing from its event."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.edge.wiring import usage_service

service = usage_service()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = service.run()
    metrics.add_metric(name="AccountsFlagged", unit="Count", value=report.flagged)
    logger.info("usage check done", extra=report.model_dump())
    return report.model_dump()
