"""Exception-to-HTTP mapping for the events API, in one place.

Envelope problems (bad JSON, no ``events``, 0 or >100 events) are the whole request's fault:
400 for a body that is not JSON, 415 for a content type other than JSON, 422 for a JSON body
that breaks the envelope, each with a message naming the field. Problems with one event are
never raised: they come back as that event's ``rejected`` result, next to its accepted neighbours.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from redflag.events import describe_errors, field_of
from redflag.observability import logger


def _error(status: int, message: str, errors: list[dict] | None = None) -> Response:
    body = {"message": message} | ({"errors": errors} if errors else {})
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _not_json(app: APIGatewayRestResolver) -> bool:
    content_type = app.current_event.headers.get("content-type") or ""  # a CaseInsensitiveDict
    return bool(content_type) and "json" not in content_type.split(";")[0].lower()


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response:
        if _not_json(app):  # a form body was parsed as fields named by the payload: never echo it
            return _error(415, "content-type: send application/json")
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "body: not valid JSON")
        slim = [{"field": field_of(e), "message": e.get("msg")} for e in errors]
        return _error(422, describe_errors(errors), slim)

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        return _error(404, "not found: POST /v1/events is the only route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return _error(500, "internal error; the request can be retried (events with an event_id are applied once)")
