"""DynamoDB stream -> what it teaches: duration histograms per task and segment (the baselines learned
thresholds read), runs started, completed and flagged by reason, and account activity.

The stream's event source mapping runs it over tumbling windows: each invocation folds its records
into the window's state and hands it back; the window's final invocation writes the fold once
(``DynamoStats.persist``: a marker per window makes a retried window write nothing twice).
"""

from typing import Any

from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from redflag.adapters.observability import logger, metrics, tracer
from redflag.adapters.stream import decode
from redflag.core import clock
from redflag.core.baselines import ALL
from redflag.edge.wiring import stats_store
from redflag.services.learning import Fold

store = stats_store()


class Window(BaseModel):
    start: str
    end: str


class WindowEvent(BaseModel):
    """A tumbling-window invocation of a DynamoDB stream mapping."""

    model_config = ConfigDict(extra="ignore")

    Records: list[DynamoDBStreamRecordModel] = []
    window: Window | None = None
    state: dict[str, Any] | None = None
    shardId: str = "shard"
    isFinalInvokeForWindow: bool = True


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    window = WindowEvent.model_validate(event)
    fold = Fold.from_state(window.state)
    skipped = 0
    for record in window.Records:
        try:
            change = decode(record)
        except ValueError:
            skipped += 1  # an item this code cannot read teaches nothing; the rest of the window counts
            continue
        fold.add_change(change)
    if skipped:
        logger.warning("records skipped", extra={"skipped": skipped})
    if not window.isFinalInvokeForWindow:
        return {"state": fold.to_state()}
    start = window.window.start if window.window else ""
    store.persist(fold, f"{window.shardId}#{start}", clock.SYSTEM.now())
    metrics.add_metric(name="StatsWindowsWritten", unit="Count", value=1)
    after_flag = sum(s.counts.get("done_after_flag", 0) for (_, seg), s in fold.tasks.items() if seg == ALL)
    metrics.add_metric(name="CompletedAfterFlag", unit="Count", value=after_flag)
    logger.info("window written", extra={"tasks": len(fold.tasks), "active": len(fold.active)})
    return {}
