"""Every minute (EventBridge schedule): flag open timers when they fall due, well before TTL would.

A scheduled run reads nothing from its event (a scheduled event, a console test ``{}`` and
``sam local generate-event cloudwatch scheduled-event`` all do the same) and stops before its
deadline. ``{"shards": [3, 4]}`` is a worker the run started for a backlog: it drains those shards
of the due index and stops.
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
    logger.info("sweep done", extra=report.model_dump() | {"worker": request.shards is not None})
    return report.model_dump(include={"due", "flagged", "lost_races", "passes"})
