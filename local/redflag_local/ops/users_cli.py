"""`redflag users unsubscribe|resubscribe|erase`: a user's emails and data on a deployed stack, through
its users API (the API key routes). Prints ids and counts, never an address."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

import typer

app = typer.Typer(
    help="A user's emails and data on a deployed stack: opt them out or back in, erase them.", no_args_is_help=True
)

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="REDFLAG_API_URL",
        help="The API's base: the EventsApiUrl output without /v1/events (that suffix is dropped if given)",
    ),
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="REDFLAG_API_KEY", help="Sent as x-api-key")]
Email = Annotated[str | None, typer.Option("--email", help="The user's address too (an email's link opts it out)")]
Timeout = Annotated[float, typer.Option(min=1, help="Seconds to wait for the answer")]
UserId = Annotated[str, typer.Argument(help="The user id the product sends in its events")]


class UsersApiError(Exception):
    """The API refused the request or could not be reached; the message says which, without addresses."""


def api_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsersApiError(
            f"{url!r} is not an http(s) URL, e.g. https://abc123.execute-api.us-east-1.amazonaws.com/Prod"
        )
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1/events")
    return urlunsplit(parts._replace(path=path, query="", fragment=""))


def call(method: str, url: str, api_key: str | None, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    """One request to the users API: its JSON answer, or UsersApiError."""
    headers = {"Accept": "application/json"} | ({"x-api-key": api_key} if api_key else {})
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            parsed = json.loads(exc.read() or b"null")
        except (ValueError, OSError):
            parsed = None
        message = parsed.get("message") if isinstance(parsed, dict) else None
        hint = " (check --api-key)" if exc.code == 403 else ""
        raise UsersApiError(f"HTTP {exc.code}: {message or exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UsersApiError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise UsersApiError("the answer was not JSON: is --url the API's base?") from None
    if not isinstance(answer, dict):
        raise UsersApiError("the answer was not a JSON object: is --url the API's base?")
    return answer


def _user_url(base: str, user_id: str, suffix: str = "") -> str:
    return f"{api_base(base)}/v1/users/{quote(user_id, safe='')}{suffix}"


def _run(action: Any) -> None:
    try:
        action()
    except UsersApiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _subscription(user_id: str, subscribed: bool, email: str | None, url: str, api_key: str | None, timeout: float):
    def action() -> None:
        body: dict[str, Any] = {"subscribed": subscribed} | ({"email": email} if email else {})
        state = call("PUT", _user_url(url, user_id, "/subscription"), api_key, body, timeout)
        what = "subscribed" if state.get("subscribed") else "unsubscribed"
        address = ", address included" if state.get("address_included") else ""
        typer.echo(f"{user_id}: {what}{address}")

    _run(action)


@app.command()
def unsubscribe(user_id: UserId, url: Url, api_key: ApiKey = None, email: Email = None, timeout: Timeout = 30) -> None:
    """Opt a user out of Red Flag's emails (as their email's link would), by id and optionally address."""
    _subscription(user_id, False, email, url, api_key, timeout)


@app.command()
def resubscribe(user_id: UserId, url: Url, api_key: ApiKey = None, email: Email = None, timeout: Timeout = 30) -> None:
    """Opt a user back in. Give --email too when they used an email's link: it opted out the address."""
    _subscription(user_id, True, email, url, api_key, timeout)


@app.command()
def erase(user_id: UserId, url: Url, api_key: ApiKey = None, timeout: Timeout = 30) -> None:
    """Erase what Red Flag holds for a user; an opt-out stays (as keyed hashes). Safe to repeat."""

    def action() -> None:
        answer = call("DELETE", _user_url(url, user_id), api_key, None, timeout)
        kept = "; opted out: the hashed opt-out stays" if answer.get("suppressed") else ""
        typer.echo(f"{user_id}: erased, {answer.get('deleted', 0)} item(s) deleted{kept}")

    _run(action)
