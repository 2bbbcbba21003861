"""Every minute (EventBridge schedule): each ``rate`` rule's share of runs over its window, from the stats
function's per-minute buckets, against its levels; a crossing or a recovery is written once as an item
of the timers table, which the stream takes to customer success and the webhook. Reads nothing from its
event."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.edge.wiring import rates_service

service = rates_service()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = service.run()
    metrics.add_metric(name="RatesCrossed", unit="Count", value=report.crossed)
    metrics.add_metric(name="RatesRecovered", unit="Count", value=report.recovered)
    if report.unwatchable:
        logger.warning("rate rules that watch nothing", extra={"rules": sorted(report.unwatchable)})
    logger.info("rates checked", extra=report.model_dump(exclude={"unwatchable"}))
    return report.model_dump()
