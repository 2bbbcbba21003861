"""Every minute (EventBridge schedule): flag open timers when they fall due, well before TTL would.

A scheduled run reads nothing from its event (a scheduled event, a console test ``{}`` and
``sam local generate-event cloudwatch scheduled-event`` all do the same) and stops before its
deadline. A minute too heavy to flag alone is handed to drain workers (functions/sweep_drain); a
worker payload sent here (``{"shards": [3, 4]}``) is swept the same way, without starting workers.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from redflag.adapters.observability import logger, metrics, tracer
from redflag.edge.wiring import sweep_service

service = sweep_service()


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shards: list[int] | None = Field(default=None, description="a worker's shards; absent: a scheduled run")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = SweepRequest.model_validate(event if isinstance(event, dict) else {})
    report = service.run(time_left=lambda: context.get_remaining_time_in_millis() / 1000, shards=request.shards)
    metrics.add_metric(name="TimersFlagged", unit="Count", value=report.flagged)
    metrics.add_metric(name="SweepMaxLatenessSeconds", unit="Seconds", value=report.max_lateness)
    if report.dispatched:
        metrics.add_metric(name="SweepWorkersStarted", unit="Count", value=report.dispatched)
    if report.rejected:
        metrics.add_metric(name="SweepWritesRejected", unit="Count", value=report.rejected)
    logger.info("sweep done", extra=report.model_dump() | {"worker": request.shards is not None})
    if report.rejected:  # a permanent error (access, validation): fail the run, so its errors alarm says so
        raise RuntimeError(f"{report.rejected} flag writes rejected")
    return report.model_dump(include={"due", "flagged", "lost_races", "passes"})
