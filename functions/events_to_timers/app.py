"""POST /v1/events: product events in, timers armed or cancelled, one result per event."""

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.wiring import ingest_service
from redflag.events import ErrorBody, EventBatch, IngestResponse
from redflag.http import register_error_handlers
from redflag.observability import count_outcomes, logger, metrics, tracer

app = APIGatewayRestResolver(enable_validation=True)
register_error_handlers(app)
service = ingest_service()


def _doc(description: str, model: type) -> dict:
    return {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}


@app.post(
    "/v1/events",
    summary="Post task events",
    tags=["events"],
    responses={
        202: _doc("One result per event, in order", IngestResponse),
        400: _doc("The body is not JSON", ErrorBody),
        415: _doc("The content type is not JSON", ErrorBody),
        422: _doc("The envelope is invalid; the message names the field", ErrorBody),
    },
)
def post_events(
    batch: Annotated[EventBatch, Body(description="1-100 events, or one bare event")],
) -> Response[IngestResponse]:
    result = service.ingest(batch.events)
    count_outcomes(result)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=result.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
