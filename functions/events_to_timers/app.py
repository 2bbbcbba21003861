"""POST /v1/events: product events in, timers armed or cancelled, one result per event."""

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import count_outcomes, logger, metrics, tracer
from redflag.core.events import ErrorBody, EventBatch, IngestResponse
from redflag.edge.api import normalize_content_type, object_json, register_error_handlers
from redflag.edge.wiring import ingest_service

BODY_SHAPE = 'send {"events": [...]} (1-100 events) or one event object'
app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=object_json(BODY_SHAPE))
register_error_handlers(app)
service = ingest_service()


def _doc(description: str, model: type) -> OpenAPIResponse:
    return {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}


@app.post(
    "/v1/events",
    summary="Post task events",
    tags=["events"],
    responses={
        202: _doc("One result per event, in order; send the events marked `retry` again", IngestResponse),
        400: _doc("The body is not JSON, or held bytes that are not UTF-8", ErrorBody),
        415: _doc("The content type is not JSON", ErrorBody),
        422: _doc(
            "The envelope is invalid (no `events`, 0 or more than 100, not a JSON object); the message names the "
            "field. An invalid event is not a 422: it is answered `rejected` in the 202",
            ErrorBody,
        ),
        500: _doc("Nothing was applied; the request can be sent again", ErrorBody),
        503: _doc("No event could be applied now (every one is `retry`); send the request again", IngestResponse),
    },
)
def post_events(
    batch: Annotated[EventBatch, Body(description="1-100 events, or one bare event")],
) -> Response[IngestResponse]:
    result = service.ingest(batch.events)
    count_outcomes(result)
    everything_failed = result.retry == len(result.results)
    return Response(
        status_code=503 if everything_failed else 202,
        content_type=content_types.APPLICATION_JSON,
        body=result.model_dump(mode="json"),  # type: ignore[arg-type]  # typed by its model for the OpenAPI schema, sent as its JSON
        headers={"Retry-After": "1"} if result.retry else None,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    normalize_content_type(event)  # Application/JSON, application/vnd.api+json: JSON, whatever the case
    return app.resolve(event, context)
