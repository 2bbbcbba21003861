"""The sweeper's drain worker: started by a scheduled sweeper run (an asynchronous invoke) when the
run's minute holds more due timers than it should flag alone. ``{"shards": [3, 4]}``: sweep those
shards of the due index for one run's window, as the scheduled run would have, and stop. It starts no
workers of its own; its memory (and so its CPU, which flagging is bound by) is ``SweepDrainMemory``.
"""

from typing import Annotated

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from redflag.adapters.observability import logger, metrics, tracer
from redflag.edge.wiring import sweep_service

service = sweep_service(drain=True)


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shards: list[Annotated[int, Field(ge=0, le=255)]] = Field(min_length=1, description="due-index shards to sweep")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = DrainRequest.model_validate(event)
    report = service.run(time_left=lambda: context.get_remaining_time_in_millis() / 1000, shards=request.shards)
    metrics.add_metric(name="TimersFlagged", unit="Count", value=report.flagged)
    metrics.add_metric(name="SweepMaxLatenessSeconds", unit="Seconds", value=report.max_lateness)
    if report.rejected:
        metrics.add_metric(name="SweepWritesRejected", unit="Count", value=report.rejected)
    logger.info("sweep done", extra=report.model_dump() | {"worker": True, "shards": request.shards})
    if report.rejected:  # a permanent error (access, validation): fail the run, so its errors alarm says so
        raise RuntimeError(f"{report.rejected} flag writes rejected")
    return report.model_dump(include={"due", "flagged", "lost_races", "passes"})
