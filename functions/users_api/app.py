"""The users API: one-click unsubscribe (public), a user's subscription and erasure (API key).

- ``GET /v1/unsubscribe?token=...``: a page with a button that POSTs to the same URL. A GET never
  unsubscribes: link scanners and previews follow GETs.
- ``POST /v1/unsubscribe?token=...``: the RFC 8058 one-click target (mail clients POST
  ``List-Unsubscribe=One-Click``; any body is accepted and none is read: the token decides). Opts out.
- ``PUT /v1/users/{user_id}/subscription``: ``{"subscribed": false|true, "email": optional}``.
- ``DELETE /v1/users/{user_id}``: erase what Red Flag holds for the user (``redflag.services.users``).

A forged, altered, expired or malformed token is a **403** that never echoes the token; so is anything
else wrong with a request to ``/v1/unsubscribe`` (a repeated ``token``, a token that is not ASCII): that
route answers an HTML page, always, never JSON. The HTML
pages escape every value, forbid scripts, framing and referrers (the URL carries the token), and are
never cached. Errors otherwise follow ``redflag.edge.api``: 400 bad JSON, 415 not JSON, 422 naming the
field, 503 when storage is busy (nothing was written that matters: send again), 500 otherwise.
Logs and metrics carry counts and outcomes, never a user id, an address or a token.
"""

from html import escape
from typing import Annotated
from urllib.parse import quote, unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.core.unsubscribe import InvalidToken
from redflag.edge.api import (
    UNSUPPORTED,
    NotAnObject,
    error,
    invalid_request,
    normalize_content_type,
    not_an_object,
    object_json,
)
from redflag.edge.wiring import users_service
from redflag.services.ports import StoreUnavailable
from redflag.services.users import Erasure, Subscription, SubscriptionChange, user_id_error

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=object_json("send one JSON object"))
service = users_service()

HTML = "text/html; charset=utf-8"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
STYLE = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"


def _page(status: int, title: str, paragraphs: list[str], form_action: str | None = None) -> Response:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    if form_action is not None:
        body += (
            f'<form method="post" action="{escape(form_action, quote=True)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return Response(status_code=status, content_type=HTML, body=html, headers=dict(PAGE_HEADERS))


def _refused(exc: InvalidToken) -> Response:
    metrics.add_metric(name="UnsubscribeRefused", unit="Count", value=1)
    logger.info("unsubscribe token refused", extra={"reason": str(exc)})  # malformed, forged or expired
    if str(exc) == "expired":
        lines = ["This unsubscribe link has expired.", "Use the link in a more recent email from us."]
    else:
        lines = ["This unsubscribe link is not valid.", "Use the link exactly as it appears in the email."]
    return _page(403, "Link not valid", lines)


def _busy_page() -> Response:
    page = _page(503, "Please try again", ["We could not record this just now. Please try again in a minute."])
    page.headers["Retry-After"] = "5"
    return page


# B107 below: `token` is the signed token of an unsubscribe link (empty = absent), not a password
@app.get("/v1/unsubscribe", summary="The unsubscribe page (no change)", tags=["users"])
def unsubscribe_page(  # nosec B107
    token: Annotated[str, Query(description="The signed token of the email's link")] = "",
) -> Response[str]:
    try:
        service.check(token)
    except InvalidToken as exc:
        return _refused(exc)
    return _page(
        200,
        "Unsubscribe?",
        ["You will no longer get emails from us when a task seems to be taking you a while."],
        form_action=f"?token={quote(token, safe='')}",
    )


@app.post("/v1/unsubscribe", summary="One-click unsubscribe (RFC 8058)", tags=["users"])
def unsubscribe(  # nosec B107
    token: Annotated[str, Query(description="The signed token of the email's link")] = "",
) -> Response[str]:
    try:
        who = service.unsubscribe(token)
    except InvalidToken as exc:
        return _refused(exc)
    metrics.add_metric(name="Unsubscribed", unit="Count", value=1)
    logger.info("unsubscribed", extra={"address": bool(who.email_hash)})
    return _page(200, "You are unsubscribed", ["You will not get these emails any more."])


class BadUserId(Exception):
    """The path's user id breaks the events API's rule for one (the message names it, never quotes it)."""


def _user_id(raw: str) -> str:
    """The path parameter as the caller meant it (API Gateway REST passes it percent-encoded)."""
    user_id = unquote(raw)
    problem = user_id_error(user_id)
    if problem:
        raise BadUserId(problem)
    return user_id


@app.put("/v1/users/<user_id>/subscription", summary="Opt a user out, or back in", tags=["users"])
def put_subscription(user_id: str, change: Annotated[SubscriptionChange, Body()]) -> Response[Subscription]:
    state = service.set_subscription(_user_id(user_id), change)
    metrics.add_metric(name="SubscriptionChanged", unit="Count", value=1)
    logger.info("subscription changed", extra={"subscribed": state.subscribed, "address": state.address_included})
    body = state.model_dump(mode="json")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)  # type: ignore[arg-type]  # typed by its model for the OpenAPI schema, sent as its JSON


@app.delete("/v1/users/<user_id>", summary="Erase what Red Flag holds for a user", tags=["users"])
def erase(user_id: str) -> Response[Erasure]:
    erased = service.erase(_user_id(user_id))
    metrics.add_metric(name="UsersErased", unit="Count", value=1)
    logger.info("user erased", extra={"deleted": erased.deleted, "suppressed": erased.suppressed})
    body = erased.model_dump(mode="json")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)  # type: ignore[arg-type]  # typed by its model for the OpenAPI schema, sent as its JSON


# --- every other answer, in redflag.edge.api's style ---------------------------------------------------


def _public() -> bool:
    return app.current_event.path.rstrip("/").endswith("/v1/unsubscribe")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported(_exc: RequestUnsupportedContentType) -> Response:
    if _public():  # the HTML route answers HTML, always
        return _refused(InvalidToken("malformed"))
    return error(415, UNSUPPORTED)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    if _public():  # its only input is the query's token: a repeated `token` is a malformed link (403 page)
        return _refused(InvalidToken("malformed"))
    return invalid_request(exc, app.current_event.headers.get("content-type"))  # a form: 415, never echoed


@app.exception_handler(NotAnObject)
def _not_an_object(exc: NotAnObject) -> Response:
    return not_an_object(exc)


@app.not_found
def _not_found(_exc: Exception) -> Response:
    return error(404, "not found: /v1/unsubscribe, /v1/users/{user_id} and /v1/users/{user_id}/subscription")


@app.exception_handler(BadUserId)
def _bad_user_id(exc: BadUserId) -> Response:
    return error(422, str(exc), [{"field": "user_id", "message": str(exc).removeprefix("user_id: ")}])


@app.exception_handler(StoreUnavailable)
def _busy(exc: StoreUnavailable) -> Response:
    logger.warning("store unavailable", extra={"error": exc.code})
    if _public():
        return _busy_page()
    answer = error(503, "storage is busy; send the request again (it is safe to repeat)")
    answer.headers["Retry-After"] = "1"
    return answer


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.error("unhandled error", extra={"error": type(exc).__name__})  # a message can quote data
    if _public():
        return _page(500, "Something went wrong", ["Please try again later."])
    return error(500, "internal error; the request can be sent again (every route is safe to repeat)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if event.get("httpMethod") == "PUT":
        normalize_content_type(event)  # Application/JSON, application/*+json: JSON; a form: 415 unread
    return app.resolve(event, context)
