"""Every minute (EventBridge schedule): flag open timers when they fall due, well before TTL would.

The run reads nothing from its event (a scheduled event, a console test ``{}`` and
``sam local generate-event cloudwatch scheduled-event`` all do the same) and stops before its deadline.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.wiring import sweep_service
from redflag.observability import logger, metrics, tracer

service = sweep_service()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = service.run(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric(name="TimersFlagged", unit="Count", value=report.flagged)
    metrics.add_metric(name="SweepMaxLatenessSeconds", unit="Seconds", value=report.max_lateness)
    logger.info("sweep done", extra=report.model_dump())
    return report.model_dump(include={"due", "flagged", "lost_races", "passes"})
