"""Secrets from Secrets Manager or SSM SecureStrings (never from an environment variable), cached by
Powertools, and what is built on them: signed unsubscribe links and the keys of opt-out markers."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from aws_lambda_powertools.utilities import parameters

from redflag.core import tracking, unsubscribe


class Secret:
    """The value of one secret, as bytes; read at first use and cached ``max_age`` seconds."""

    def __init__(self, secret_id: str, max_age: int = 300) -> None:
        self._id = secret_id
        self._max_age = max_age

    def __call__(self) -> bytes:
        value = parameters.get_secret(self._id, max_age=self._max_age)
        return value.encode() if isinstance(value, str) else bytes(value)


class WriteKeys:
    """The tracking API's write keys, from their secret: one key, or a JSON list of keys (while one is
    rotated, the old and the new); read through the secret's cache."""

    def __init__(self, secret: Callable[[], bytes]) -> None:
        self._secret = secret

    def __call__(self) -> tuple[str, ...]:
        return tracking.write_keys(self._secret().decode(errors="replace"))


class SecureString:
    """The value of one SSM SecureString (the Slack webhook URL), decrypted; read at first use and
    cached ``max_age`` seconds."""

    def __init__(self, name: str, max_age: int = 300) -> None:
        self._name = name
        self._max_age = max_age

    def __call__(self) -> str:
        return str(parameters.get_parameter(self._name, decrypt=True, max_age=self._max_age)).strip()


def unsubscribe_links(
    base_url: str, secret: Callable[[], bytes], days: int, now: Callable[[], float]
) -> Callable[[str, str | None], str]:
    def link(user_id: str, email: str | None) -> str:
        token = unsubscribe.sign(secret(), user_id, email, int(now() + days * 86400))
        return f"{base_url}?token={quote(token, safe='')}"

    return link


def suppression_keys(secret: Callable[[], bytes]) -> Callable[[str, str | None], list[str]]:
    def keys(user_id: str, email: str | None) -> list[str]:
        found = [unsubscribe.suppression_key(secret(), "user", user_id)]
        if email:
            found.append(unsubscribe.suppression_key(secret(), "email", email))
        return found

    return keys
