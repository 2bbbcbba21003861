"""The tracking API: Segment-compatible calls in (``/v1/batch``, ``/v1/track``, ``/v1/identify``,
``/v1/group``, ``/v1/page``, ``/v1/screen``, ``/v1/alias``; ``/v1/webhook`` for Segment's and
RudderStack's webhook destinations), timers armed or completed and profiles kept, one result per call.

Authenticated here, not by API Gateway: a write key (the Basic auth username, or ``writeKey`` in the
body) for every route, or on ``/v1/webhook`` Segment's ``X-Signature``; ``redflag.edge.tracking`` has
the HTTP edge (bodies, gzip, limits, errors), ``redflag.services.tracking`` what a call does.

Answers (the SDKs' retry logic reads them): **200** with one result per call; **503** with
``Retry-After`` when a passing fault kept any call from being applied (the SDK sends the batch again;
what was applied is a duplicate then); **400** for a body that is not JSON, over a limit, or not the
route's shape; **401** without a valid write key (nothing applied); **415** for a body that is not
JSON; **500** for anything unexpected (send again: messageIds make it safe).
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import SkipValidation

from redflag.adapters.observability import count_tracking, logger, metrics, tracer
from redflag.core.events import describe_errors
from redflag.core.tracking import (
    AliasCall,
    CallType,
    GroupCall,
    IdentifyCall,
    PageCall,
    ScreenCall,
    TrackCall,
    TrackingBatch,
)
from redflag.edge import tracking as edge
from redflag.edge.api import is_json, normalize_content_type, safe_json
from redflag.edge.wiring import tracking_service
from redflag.services.tracking import TrackingError, TrackingResponse

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=safe_json)
service, gate = tracking_service()
RETRY_AFTER_SECONDS = "1"


def _doc(description: str, model: type) -> OpenAPIResponse:
    return {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}


RESPONSES: dict[int, OpenAPIResponse] = {
    200: _doc("One result per call, in order (a call can be `rejected` for a reason of its own)", TrackingResponse),
    400: _doc("Not JSON, over the size limit (500 KB a batch, 32 KB a call), or not the route's shape", TrackingError),
    401: _doc("No write key, or not one of the stack's (nothing was applied)", TrackingError),
    415: _doc("The content type is not JSON", TrackingError),
    500: _doc("An unexpected error; send the request again (messageIds make it safe)", TrackingError),
    503: _doc("A passing fault kept a call from being applied: send the request again (Retry-After)", TrackingResponse),
}


def _authorised(body_key: Any) -> None:
    """A write key: the Basic auth username, else the body's ``writeKey``; raises Unauthorized."""
    given = edge.basic_key(app.current_event.raw_event)
    if given is None:
        given = body_key if isinstance(body_key, str) else None
    if not gate.key_ok(given):
        raise edge.Unauthorized("no write key" if given is None else "not a write key of this stack")


def _answer(result: TrackingResponse) -> Response[TrackingResponse]:
    count_tracking(result)
    return Response(
        status_code=503 if result.retry else 200,
        content_type=content_types.APPLICATION_JSON,
        body=result.model_dump(mode="json"),  # type: ignore[arg-type]  # typed by its model for the OpenAPI schema, sent as its JSON
        headers={"Retry-After": RETRY_AFTER_SECONDS} if result.retry else None,
    )


@app.post("/v1/batch", summary="Post a batch of calls (the SDKs' route)", tags=["tracking"], responses=RESPONSES)
def post_batch(
    body: Annotated[TrackingBatch, Body(description="Up to 2,500 calls, 500 KB")],
) -> Response[TrackingResponse]:
    _authorised(body.writeKey)
    return _answer(service.receive(body.batch, sent_at=body.sentAt, context=body.context))


def _single(call_type: CallType, raw: Any) -> Response[TrackingResponse]:
    _authorised(raw.get("writeKey") if isinstance(raw, dict) else None)
    if not isinstance(raw, dict):
        raise edge.BodyProblem(f"body: one {call_type} call, a JSON object")
    return _answer(service.receive([raw], call_type=call_type))


@app.post("/v1/track", summary="Post one track call", tags=["tracking"], responses=RESPONSES)
def post_track(
    body: Annotated[SkipValidation[TrackCall], Body(description="One call, 32 KB")],
) -> Response[TrackingResponse]:
    return _single("track", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post("/v1/identify", summary="Post one identify call (the user's profile)", tags=["tracking"], responses=RESPONSES)
def post_identify(body: Annotated[SkipValidation[IdentifyCall], Body()]) -> Response[TrackingResponse]:
    return _single("identify", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post("/v1/group", summary="Post one group call (the user's account)", tags=["tracking"], responses=RESPONSES)
def post_group(body: Annotated[SkipValidation[GroupCall], Body()]) -> Response[TrackingResponse]:
    return _single("group", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post("/v1/page", summary="Post one page call (activity)", tags=["tracking"], responses=RESPONSES)
def post_page(body: Annotated[SkipValidation[PageCall], Body()]) -> Response[TrackingResponse]:
    return _single("page", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post("/v1/screen", summary="Post one screen call (activity)", tags=["tracking"], responses=RESPONSES)
def post_screen(body: Annotated[SkipValidation[ScreenCall], Body()]) -> Response[TrackingResponse]:
    return _single("screen", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post(
    "/v1/alias",
    summary="Post one alias call: not supported (answered `ignored`)",
    tags=["tracking"],
    responses=RESPONSES,
)
def post_alias(body: Annotated[SkipValidation[AliasCall], Body()]) -> Response[TrackingResponse]:
    return _single("alias", body)  # SkipValidation: the JSON as sent, checked by the service


@app.post(
    "/v1/webhook",
    summary="Segment's Webhooks destination (X-Signature) and RudderStack's webhook destination (write key)",
    tags=["tracking"],
    responses=RESPONSES,
)
def post_webhook(
    body: Annotated[
        SkipValidation[TrackingBatch | list[dict[str, Any]] | dict[str, Any]],
        Body(description="One call (a destination's POST), a JSON array of calls, or a batch"),
    ],
) -> Response[TrackingResponse]:
    signature = edge.header(app.current_event.raw_event, "x-signature")
    if signature is not None:  # Segment's: it must hold, whatever else the request carries
        if not gate.signed(app.context.get("raw_body", b""), signature):
            raise edge.Unauthorized("X-Signature does not match the body")
    else:
        _authorised(body.get("writeKey") if isinstance(body, dict) else None)
    raw: Any = body  # SkipValidation: the JSON as sent
    if isinstance(raw, dict) and isinstance(raw.get("batch"), list):
        calls, sent_at = raw["batch"], raw.get("sentAt")
    else:
        calls, sent_at = (raw if isinstance(raw, list) else [raw]), None
    if not calls or len(calls) > 2500:
        raise edge.BodyProblem("body: one call, a JSON array of 1-2500 calls, or a batch")
    return _answer(service.receive(calls, sent_at=sent_at if isinstance(sent_at, str) else None, trusted_time=True))


# --- every other answer: {"code", "message"}, what the SDKs read ---------------------------------------


@app.exception_handler(edge.Unauthorized)
def _unauthorized(exc: edge.Unauthorized) -> Response:
    metrics.add_metric(name="TrackingUnauthorized", unit="Count", value=1)
    logger.info("tracking request refused", extra={"reason": str(exc)})
    return edge.error(401, "unauthorized", f"{exc}: send the write key as the Basic auth username")


@app.exception_handler(edge.BodyProblem)
def _bad_body(exc: edge.BodyProblem) -> Response:
    return edge.error(400, "invalid_request", exc.message)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported(_exc: RequestUnsupportedContentType) -> Response:
    return edge.error(415, "unsupported_media_type", "content-type: send application/json")


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    if not is_json(app.current_event.headers.get("content-type")):
        return edge.error(415, "unsupported_media_type", "content-type: send application/json")
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return edge.error(400, "invalid_json", "body: not valid JSON")
    return edge.error(400, "invalid_request", describe_errors(errors[:5])[:500])


@app.not_found
def _not_found(_exc: Exception) -> Response:
    return edge.error(404, "not_found", "not found: POST /v1/batch, /v1/track, /v1/identify, ... (docs/api.md)")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.error("unhandled error", extra={"error": type(exc).__name__})  # a message can quote data
    return edge.error(500, "internal_error", "internal error; send the request again (messageIds make it safe)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if not normalize_content_type(event):
        return edge.proxy_error(415, "unsupported_media_type", "content-type: send application/json")
    try:
        raw = edge.prepare(event)  # gzip undone, within the route's size limit
    except edge.BodyProblem as problem:
        return edge.proxy_error(400, "invalid_request", problem.message)
    app.append_context(raw_body=raw)  # what a webhook destination signed (cleared after the request)
    return app.resolve(event, context)
