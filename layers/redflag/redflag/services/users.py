"""Unsubscribe and erasure: a user opting out of Red Flag's emails, and everything held for a user
removed on request. Pure: it reaches storage and the secret through the ports below (no boto3).

- **One-click unsubscribe** (RFC 8058): every user email links to ``/v1/unsubscribe?token=...``, a
  token signed with the stack's secret (``redflag.core.unsubscribe``). ``check`` verifies one (the page a
  GET shows: a link scanner's GET changes nothing), ``unsubscribe`` verifies it and writes the
  opt-out markers: one for the user id and, when the token names the address the email went to, one
  for the address. Writing them again changes nothing.
- **Subscription** (the product, with the API key): ``set_subscription`` writes the markers
  (``subscribed`` false) or deletes them (true); the address's marker only when the address is given.
- **Erasure** (``erase``): one Query of the user's partition in the timers table finds their timers,
  activity record, deferred emails and email log; those go, with the user's escalation state, and
  with the user's member markers in the stats table for each account their records named. The
  opt-out markers stay: they are keyed hashes (HMAC with the secret) of the id and the address, not
  the id or the address, and they are what keeps an opted-out user from ever being emailed again.
  What else still holds the user's id or a hash of it, and until when: the stats table's day and
  week markers (hashes, gone within 40 days, ``redflag.adapters.stats_table.MARKER_DAYS``), an account's
  escalation state (the user's recent red flags, gone within two escalation windows), the idempotency
  records of alerts sent (3 days), messages parked in the dead-letter queue (up to 14 days), and the
  functions' logs (``LogRetentionDays``). An event of the user arriving after the erasure starts new
  records, and activity still in the stats function's open window (a minute) can write a member
  marker again (it expires within 40 days too).

What is stored, and under which keys, is the adapters' business (``redflag.adapters.user_records``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from redflag.core import mime, unsubscribe
from redflag.core.events import Id
from redflag.core.unsubscribe import InvalidToken, Subscriber

MAX_TOKEN_CHARS = 1024  # a real token is ~150; a longer one is refused before any work

Secret = Callable[[], bytes]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(mime.checked_address)]


class UserRecords(Protocol):
    """What the timers table holds of one user (``redflag.adapters.user_records`` knows its layout)."""

    def held(self, user_id: str) -> tuple[list[Any], set[str]]:
        """The keys of every record of the user (one Query of their partition, plus their state kept
        elsewhere), and the account ids those records name. Raises StoreUnavailable."""
        ...

    def delete(self, keys: list[Any]) -> int:
        """Delete these records (absent ones are fine); how many keys were asked."""
        ...


class Suppressions(Protocol):
    """The opt-out markers, by key (``unsubscribe.suppression_key``)."""

    def suppress(self, keys: Sequence[str], at: float) -> None:
        """Write the markers; one that exists already stays as it was."""
        ...

    def allow(self, keys: Sequence[str]) -> None:
        """Delete the markers (absent ones are fine)."""
        ...

    def suppressed(self, keys: Sequence[str]) -> bool:
        """Any of these markers exists."""
        ...


class Members(Protocol):
    """The stats table's per-account member markers (a hash of account and user id)."""

    def forget(self, user_id: str, accounts: Sequence[str]) -> int:
        """Delete the user's member marker and retention entry of each account; how many were asked."""
        ...


class SubscriptionChange(BaseModel):
    """``PUT /v1/users/{user_id}/subscription``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscribed: StrictBool = Field(description="false: never email this user (opt out); true: opt back in")
    email: Email | None = Field(
        default=None, description="Also (un)suppress this address, which an unsubscribe link may have opted out"
    )


class Subscription(BaseModel):
    user_id: str
    subscribed: bool
    address_included: bool = Field(description="the address's marker was changed too")


class Erasure(BaseModel):
    user_id: str
    deleted: int = Field(description="items removed from the timers table (0: nothing was held)")
    suppressed: bool = Field(description="the user opted out: their (hashed) opt-out marker stays")


_USER_ID: TypeAdapter[str] = TypeAdapter(Id)


def user_id_error(user_id: str) -> str | None:
    """Why ``user_id`` cannot be a user id (the events API's rule), or None."""
    try:
        _USER_ID.validate_python(user_id)
    except ValidationError as exc:
        return f"user_id: {exc.errors()[0]['msg']}"
    return None


class UsersService:
    def __init__(
        self,
        store: UserRecords,
        suppressions: Suppressions,
        members: Members,
        secret: Secret,
        now: Callable[[], float],
    ) -> None:
        self._store = store
        self._suppressions = suppressions
        self._members = members
        self._secret = secret
        self._now = now

    # --- one-click unsubscribe ----------------------------------------------------------------

    def check(self, token: str) -> Subscriber:
        """Who a token unsubscribes; raises InvalidToken (malformed, forged or expired)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed")
        return unsubscribe.verify(self._secret(), token, self._now())

    def unsubscribe(self, token: str) -> Subscriber:
        """Verify the token, then opt out its user id (and its address, when it names one).
        Idempotent. Raises InvalidToken, before anything is written."""
        who = self.check(token)
        secret = self._secret()
        keys = [unsubscribe.suppression_key(secret, "user", who.user_id)]
        if who.email_hash:
            keys.append(who.email_hash)  # already the address's key: the token carries the hash, not the address
        self._suppressions.suppress(keys, self._now())
        return who

    # --- the product's side (API key) ---------------------------------------------------------

    def set_subscription(self, user_id: str, change: SubscriptionChange) -> Subscription:
        secret = self._secret()
        keys = [unsubscribe.suppression_key(secret, "user", user_id)]
        if change.email:
            keys.append(unsubscribe.suppression_key(secret, "email", change.email))
        if change.subscribed:
            self._suppressions.allow(keys)
        else:
            self._suppressions.suppress(keys, self._now())
        return Subscription(user_id=user_id, subscribed=change.subscribed, address_included=bool(change.email))

    def erase(self, user_id: str) -> Erasure:
        """Remove what the timers table holds for the user (one Query of their partition, plus their
        escalation state) and their member markers in the stats table. The opt-out markers stay.
        The stats table's day and week markers are hashes that expire within 40 days; they are not
        looked for. An unknown user is erased too: nothing is deleted."""
        keys, accounts = self._store.held(user_id)
        if keys:
            self._store.delete(keys)
        if accounts:
            self._members.forget(user_id, sorted(accounts))
        suppressed = self._suppressions.suppressed([unsubscribe.suppression_key(self._secret(), "user", user_id)])
        return Erasure(user_id=user_id, deleted=len(keys), suppressed=suppressed)
