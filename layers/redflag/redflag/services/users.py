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

The keys of what is stored come from ``redflag.adapters.codec``, the table's layout (pure, no boto3).
"""

from __future__ import annotations

import json
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

from redflag.adapters import codec as items
from redflag.core import mime, unsubscribe
from redflag.core.events import Id
from redflag.core.unsubscribe import InvalidToken, Subscriber

MAX_TOKEN_CHARS = 1024  # a real token is ~150; a longer one is refused before any work
# what of a user's partition is the user's: the sort keys the timers table uses for a user's records
USER_SORT_KEYS = ("user", "emails")
USER_SORT_PREFIXES = ("task#", "deferred#")

Secret = Callable[[], bytes]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(mime.checked_address)]


class PartitionStore(Protocol):
    """The timers table, as plain items (``DynamoTimerStore`` fits)."""

    def query_partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item with this partition key: one Query (paged), no scan."""
        ...

    def get_items(self, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The items among ``keys`` that exist, read consistently: (pk, sk) -> item."""
        ...

    def delete_keys(self, keys: list[dict[str, str]]) -> int:
        """Delete these items (absent ones are fine); how many keys were asked."""
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
        """Delete the user's member marker of each account; how many were asked."""
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


def _is_users(item: dict[str, Any]) -> bool:
    sk = str(item.get("sk", ""))
    return sk in USER_SORT_KEYS or sk.startswith(USER_SORT_PREFIXES)


def accounts_of(item: dict[str, Any]) -> set[str]:
    """The account ids a record of the user names: the activity record's ``account_id``, a timer's
    ``user.account_id``, a deferred email's timer's. Whatever cannot be read names none."""
    found: set[str] = set()
    if isinstance(item.get("account_id"), str):
        found.add(item["account_id"])
    user = item.get("user")
    if isinstance(user, dict) and isinstance(user.get("account_id"), str):
        found.add(user["account_id"])
    if isinstance(item.get("timer"), str):
        try:
            account = json.loads(item["timer"]).get("user", {}).get("account_id")
        except (ValueError, AttributeError):
            account = None
        if isinstance(account, str):
            found.add(account)
    return found


class UsersService:
    def __init__(
        self,
        store: PartitionStore,
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
        held = [i for i in self._store.query_partition(user_id) if _is_users(i)]
        escalation = items.escalation_key("user", user_id)
        keys = [{"pk": str(i["pk"]), "sk": str(i["sk"])} for i in held]
        if self._store.get_items([escalation]):
            keys.append(escalation)
        accounts = sorted({a for i in held for a in accounts_of(i)})
        if keys:
            self._store.delete_keys(keys)
        if accounts:
            self._members.forget(user_id, accounts)
        suppressed = self._suppressions.suppressed([unsubscribe.suppression_key(self._secret(), "user", user_id)])
        return Erasure(user_id=user_id, deleted=len(keys), suppressed=suppressed)
