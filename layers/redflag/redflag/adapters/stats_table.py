"""The stats table: what the stream teaches, kept without scans. The one place that knows its layout.

    task stats    pk = task#{task}        sk = seg#{segment}        counters, dur_s, after_flag_s, b{i}
                  (a funnel's step: task = {funnel}/{step}, a name no task can have)
    rate buckets  pk = rate#{task}        sk = m#{epoch minute}     started, abandoned, failed, converted
                                                                   (of runs started that minute; 3 days)
    a window      pk = window#{shard}     sk = {window start}#{k}   applied once (expires after 7 days)
    daily         pk = acct#{account}     sk = day#{YYYY-MM-DD}     actives
    weekly        pk = week#{week}#{n}    sk = {account}            actives, new_users, returned, active_days,
                                                                   started, failed, flags
    account flags pk = acct#{account}     sk = flags                red flags of the account's users
    markers       pk = seen#{account}#{day or week} / member#{account}   sk = a hash of the user id
    email counts  pk = email#{task}           sk = arm#{arm}       sent, delivered, bounced, complained, clicked
    email marker  pk = ses#{SES message id}   sk = {measure}       counted once (expires after 90 days)
    cohort        pk = retention#{task}       sk = {arm}#{flag day}   flagged, active7, active28
    retained      pk = retain#{account}       sk = a hash of the user id   t#{task}: {at, arm, day, until, w7, w28}

Exactly once: a window's task counts are written in transactions that also put the window's marker
(a replayed window finds it and writes nothing); each user is counted once per day, week and account
by a conditional marker written in the same transaction as its counter. Weekly rows are spread over
``WEEK_SHARDS`` partition keys so that no partition takes every account's writes; the usage-drop check
reads a week with one query per shard. Markers hold hashes, never user ids.

Response rate (``count_email``, from the SES feedback function): each SES event about a Red Flag email
adds one to its rule's counter for the measure it stands for, once per email and measure (a marker
keyed by SES's message id, in the same transaction): a retry, SNS delivering twice or a second click
on the same email counts nothing more.

Retention (``RETENTION_DAYS``, in ``persist``): a flagged user of an account enters the rule's cohort
of their flag's day and arm (``flagged``), once per user and rule in ``RETENTION_WINDOW_DAYS`` (a
conditional write on their ``retain`` item, in the transaction that counts them); their activity, as
the account counters count it, on a day in ``[N, N + 7)`` days after the flag day counts them once in
``activeN`` of that cohort (a conditional write on the same item). The item expires when the last
window it waits for is over, and erasure deletes it with the member markers.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws, batches
from redflag.core.baselines import Histogram
from redflag.core.weeks import day_of, week_of
from redflag.services.learning import BUCKET_COUNTERS, COUNTERS, Active, Flagged, Fold, TaskStats
from redflag.services.ports import StoreUnavailable

WEEK_SHARDS = 8
TRANSACTION_ITEMS = 100
MARKER_DAYS = 40  # markers outlive the longest window they guard (a week, a member's first week)
BUCKET_DAYS = 3  # rate buckets outlive the longest window a rate rule reads (a day) and the report's history
EMAIL_MARKER_DAYS = 90  # SES reports clicks as long as the link is followed: weeks, rarely months
RETENTION_DAYS = (7, 28)  # active in the week from day N after the flag
RETENTION_WEEK = 7
RETENTION_WINDOW_DAYS = max(RETENTION_DAYS) + RETENTION_WEEK  # a user's entry waits this long, then closes
EMAIL_MEASURES = ("sent", "delivered", "bounced", "complained", "clicked")
_av, _py = aws.to_attributes, aws.from_attributes


def user_hash(account: str, user: str) -> str:
    return hashlib.sha256(f"{account}\x00{user}".encode()).hexdigest()[:20]


def week_key(week: str, account: str) -> dict[str, str]:
    return {"pk": f"week#{week}#{zlib.crc32(account.encode()) % WEEK_SHARDS}", "sk": account}


def _stats_of(item: dict[str, Any]) -> TaskStats:
    counts = {name: int(item[name]) for name in COUNTERS if name in item}
    buckets = {int(k[1:]): int(v) for k, v in item.items() if k.startswith("b") and k[1:].isdigit()}
    hist = Histogram(buckets, float(item.get("dur_s", 0)))
    return TaskStats(counts, hist, float(item.get("after_flag_s", 0)))


class DynamoStats:
    def __init__(
        self, table_name: str, client: Any = None, cache_seconds: float = 60, now: Callable[[], float] = time.time
    ) -> None:
        self._table = table_name
        self._client = client or aws.client("dynamodb")
        self._cache_seconds = cache_seconds
        self._now = now
        self._cache: dict[tuple[str, str], tuple[float, Histogram | None]] = {}

    # --- reading -------------------------------------------------------------------------------

    def task_stats(self, keys: Sequence[tuple[str, str]], consistent: bool = False) -> dict[tuple[str, str], TaskStats]:
        """(task, segment) -> what was learned, in BatchGetItem calls of 100 keys."""
        wanted = [{"pk": f"task#{task}", "sk": f"seg#{seg}"} for task, seg in keys]
        out: dict[tuple[str, str], TaskStats] = {}
        for raw in batches.batch_get(self._call, self._table, [_av(k) for k in wanted], consistent):
            item = _py(raw)
            out[(item["pk"][len("task#") :], item["sk"][len("seg#") :])] = _stats_of(item)
        return out

    def task_segments(self, task: str) -> dict[str, TaskStats]:
        """Every segment learned for one task (segment ``ALL`` included): one query, no scan."""
        out: dict[str, TaskStats] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _av({":pk": f"task#{task}"}),
        }
        for raw in batches.query(self._call, **kwargs):
            item = _py(raw)
            out[item["sk"][len("seg#") :]] = _stats_of(item)
        return out

    def histograms(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Histogram]:
        """BaselineSource: the distributions, cached for ``cache_seconds`` per warm Lambda."""
        now = self._now()
        stale = [k for k in keys if k not in self._cache or now - self._cache[k][0] > self._cache_seconds]
        if stale:
            found = self.task_stats(stale)
            for k in stale:
                self._cache[k] = (now, found[k].histogram if k in found else None)
        return {k: hist for k in keys if (hist := self._cache[k][1]) is not None}

    def weekly_actives(self, week: str) -> dict[str, int]:
        """Account -> active users in ``week``: one query per shard of the week's rows."""
        return {account: row.get("actives", 0) for account, row in self.week_table(week).items()}

    def week_table(self, week: str) -> dict[str, dict[str, int]]:
        """Account -> its row for ``week`` (actives, new_users, returned): one query per shard."""
        out: dict[str, dict[str, int]] = {}
        for shard in range(WEEK_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": _av({":pk": f"week#{week}#{shard}"}),
            }
            for raw in batches.query(self._call, **kwargs):
                item = _py(raw)
                out[item["sk"]] = {k: int(v) for k, v in item.items() if isinstance(v, Decimal)}
        return out

    def rate_minutes(self, name: str, first: int, end: int) -> dict[int, dict[str, int]]:
        """The rate buckets of ``name`` for the epoch minutes ``first`` to ``end`` (exclusive): one query."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": _av({":pk": f"rate#{name}", ":a": _minute(first), ":b": _minute(end - 1)}),
        }
        out: dict[int, dict[str, int]] = {}
        for raw in batches.query(self._call, **kwargs):
            item = _py(raw)
            out[int(item["sk"][2:])] = {k: int(item[k]) for k in BUCKET_COUNTERS if k in item}
        return out

    def rate_window(self, name: str, first: int, end: int) -> dict[str, int]:
        """The rate buckets of ``name`` over a window, added up."""
        total: dict[str, int] = {}
        for counts in self.rate_minutes(name, first, end).values():
            for k, n in counts.items():
                total[k] = total.get(k, 0) + n
        return total

    def account_days(self, account: str, days: Sequence[str]) -> dict[str, int]:
        rows = self._rows([{"pk": f"acct#{account}", "sk": f"day#{d}"} for d in days])
        return {sk[len("day#") :]: row.get("actives", 0) for sk, row in rows.items()}

    def account_flags(self, accounts: Sequence[str]) -> dict[str, int]:
        rows = self._rows([{"pk": f"acct#{a}", "sk": "flags"} for a in accounts], by="pk")
        return {pk[len("acct#") :]: row.get("flags", 0) for pk, row in rows.items()}

    def _rows(self, keys: list[dict[str, str]], by: str = "sk") -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for raw in batches.batch_get(self._call, self._table, [_av(k) for k in keys], consistent=False):
            item = _py(raw)
            out[item[by]] = {k: int(v) for k, v in item.items() if isinstance(v, Decimal) and k != "expires_at"}
        return out

    # --- writing a window ---------------------------------------------------------------------

    def persist(self, fold: Fold, window: str, now: float) -> None:
        """Write one window's fold, exactly once however often the window is retried."""
        updates = [self._task_update(task, seg, stats) for (task, seg), stats in sorted(fold.tasks.items())]
        updates += [self._account_flags_update(a, n) for a, n in sorted(fold.account_flags.items())]
        keep = math.ceil(now + BUCKET_DAYS * 86400)
        updates += [self._add({"pk": f"rate#{name}", "sk": _minute(minute)}, counts, expires=keep)
                    for (name, minute), counts in sorted(fold.buckets.items())]  # fmt: skip
        updates += [
            self._add(week_key(week, account), counts) for (week, account), counts in sorted(fold.weeks.items())
        ]
        expires = math.ceil(now + 7 * 86400)
        per = TRANSACTION_ITEMS - 1
        for k, i in enumerate(range(0, len(updates), per)):
            marker = {
                "Put": {
                    "TableName": self._table,
                    "Item": _av(
                        {"pk": f"window#{window.split('#', 1)[0]}", "sk": f"{window}#{k}", "expires_at": expires}
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            self._transact([marker, *updates[i : i + per]], ok_if_first_exists=True)
        for (account, user, task), flagged in sorted(fold.cohort.items()):
            self._enter_cohort(account, user, task, flagged)
        actives = sorted(fold.active.values(), key=lambda a: (a.account_id, a.day, a.user_id))
        for active in actives:
            self._count_active(active.account_id, active.user_id, active.day, active.at, now)
        if actives:
            self._count_retained(actives)

    def _task_update(self, task: str, seg: str, stats: TaskStats) -> dict[str, Any]:
        adds: dict[str, int | Decimal] = {name: n for name, n in stats.counts.items() if n}
        adds |= {f"b{b}": c for b, c in stats.histogram.counts.items() if c}
        if stats.histogram.total_seconds:
            adds["dur_s"] = _decimal(stats.histogram.total_seconds)
        if stats.after_flag_seconds:
            adds["after_flag_s"] = _decimal(stats.after_flag_seconds)
        return self._add({"pk": f"task#{task}", "sk": f"seg#{seg}"}, adds)

    def _account_flags_update(self, account: str, n: int) -> dict[str, Any]:
        return self._add({"pk": f"acct#{account}", "sk": "flags"}, {"flags": n})

    def _add(self, key: dict[str, str], adds: dict[str, Any], expires: int | None = None) -> dict[str, Any]:
        names = {f"#a{i}": name for i, name in enumerate(adds)}
        values = {f":a{i}": value for i, value in enumerate(adds.values())}
        expression = "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True))
        if expires is not None:
            names["#e"], values[":e"] = "expires_at", expires
            expression += " SET #e = :e"
        return {
            "Update": {
                "TableName": self._table,
                "Key": _av(key),
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _av(values),
            }
        }

    def _marker(self, pk: str, sk: str, expires: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        item = {"pk": pk, "sk": sk, "expires_at": expires} | (extra or {})
        return {
            "Put": {
                "TableName": self._table,
                "Item": _av(item),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _count_active(self, account: str, user: str, day: str, at: float, now: float) -> None:
        """Count a user once per day and week of an account; the first day ever makes them a new
        member of that week, a second day within seven makes them a returning one."""
        h = user_hash(account, user)
        expires = math.ceil(now + MARKER_DAYS * 86400)
        day_counter = self._add({"pk": f"acct#{account}", "sk": f"day#{day}"}, {"actives": 1})
        week = week_of(at)
        user_days = self._add(week_key(week, account), {"active_days": 1})  # the week's DAU, added up
        if not self._transact(
            [self._marker(f"seen#{account}#{day}", h, expires), day_counter, user_days], ok_if_first_exists=True
        ):
            return  # counted already today
        self._transact(
            [self._marker(f"seen#{account}#{week}", h, expires), self._add(week_key(week, account), {"actives": 1})],
            ok_if_first_exists=True,
        )
        member = self._marker(f"member#{account}", h, expires, {"first_day": day, "first_week": week})
        first = self._transact_old([member, self._add(week_key(week, account), {"new_users": 1})])
        if first is None:
            return  # a new member, first seen today
        first_day, first_week = str(first.get("first_day", "")), str(first.get("first_week", ""))
        if first_day and day != first_day and _days_between(first_day, day) < 7 and "returned" not in first:
            returned = {
                "Update": {
                    "TableName": self._table,
                    "Key": _av({"pk": f"member#{account}", "sk": h}),
                    "UpdateExpression": "SET returned = :t",
                    "ConditionExpression": "attribute_not_exists(returned)",
                    "ExpressionAttributeValues": _av({":t": True}),
                }
            }
            self._transact(
                [returned, self._add(week_key(first_week, account), {"returned": 1})], ok_if_first_exists=True
            )

    # --- retention: a flagged user's activity in the weeks after the flag -------------------------

    def _enter_cohort(self, account: str, user: str, task: str, flagged: Flagged) -> None:
        """The user joins the cohort of the flag's day and arm, unless they are in one of this rule's
        cohorts whose window is still open (a retry finds the entry and counts nothing)."""
        day = day_of(flagged.at)
        until = flagged.at + RETENTION_WINDOW_DAYS * 86400
        entry = {"at": _decimal(flagged.at), "arm": flagged.arm, "day": day, "until": _decimal(until)}
        join = {
            "Update": {
                "TableName": self._table,
                "Key": _av({"pk": f"retain#{account}", "sk": user_hash(account, user)}),
                "UpdateExpression": "SET #t = :entry, expires_at = :expires",
                "ConditionExpression": "attribute_not_exists(#t) OR #t.#until < :at",
                "ExpressionAttributeNames": {"#t": f"t#{task}", "#until": "until"},
                "ExpressionAttributeValues": _av(
                    {":entry": entry, ":expires": math.ceil(until + 86400), ":at": _decimal(flagged.at)}
                ),
            }
        }
        cohort = self._add({"pk": f"retention#{task}", "sk": f"{flagged.arm}#{day}"}, {"flagged": 1})
        self._transact([join, cohort], ok_if_first_exists=True)

    def _count_retained(self, actives: Sequence[Active]) -> None:
        """Each active user-day of the window against the user's open cohort entries: read in batches of
        100, a hit written once per entry and horizon."""
        keys = list(dict.fromkeys((a.account_id, user_hash(a.account_id, a.user_id)) for a in actives))
        found = self._rows_raw([{"pk": f"retain#{account}", "sk": h} for account, h in keys])
        for a in actives:
            item = found.get((f"retain#{a.account_id}", user_hash(a.account_id, a.user_id)))
            for name, entry in (item or {}).items():
                if not name.startswith("t#") or not isinstance(entry, dict):
                    continue
                after = _days_between(str(entry["day"]), a.day)
                for days in RETENTION_DAYS:
                    if days <= after < days + RETENTION_WEEK and f"w{days}" not in entry:
                        entry[f"w{days}"] = True  # this window's later days find it counted
                        self._retained(a.account_id, a.user_id, name, entry, days)

    def _retained(self, account: str, user: str, name: str, entry: dict[str, Any], days: int) -> None:
        hit = {
            "Update": {
                "TableName": self._table,
                "Key": _av({"pk": f"retain#{account}", "sk": user_hash(account, user)}),
                "UpdateExpression": "SET #t.#w = :yes",
                "ConditionExpression": "#t.#at = :at AND attribute_not_exists(#t.#w)",
                "ExpressionAttributeNames": {"#t": name, "#w": f"w{days}", "#at": "at"},
                "ExpressionAttributeValues": _av({":yes": True, ":at": entry["at"]}),
            }
        }
        task = name[len("t#") :]
        cohort = self._add({"pk": f"retention#{task}", "sk": f"{entry['arm']}#{entry['day']}"}, {f"active{days}": 1})
        self._transact([hit, cohort], ok_if_first_exists=True)

    def retention(self, task: str) -> dict[tuple[str, str], dict[str, int]]:
        """(arm, flag day) -> flagged, active7, active28 of one rule's cohorts: one query."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _av({":pk": f"retention#{task}"}),
        }
        for raw in batches.query(self._call, **kwargs):
            item = _py(raw)
            arm, _, day = str(item["sk"]).partition("#")
            out[(arm, day)] = {k: int(v) for k, v in item.items() if isinstance(v, Decimal)}
        return out

    # --- response rate: what SES says of the emails ------------------------------------------------

    def count_email(self, message_id: str, task: str, arm: str, measure: str, now: float) -> bool:
        """One more ``measure`` for the rule's emails in ``arm``, once per email and measure (a marker
        in the same transaction); False when it was counted before. ``services.feedback.Responses``."""
        expires = math.ceil(now + EMAIL_MARKER_DAYS * 86400)
        marker = self._marker(f"ses#{message_id}", measure, expires)
        counter = self._add({"pk": f"email#{task}", "sk": f"arm#{arm}"}, {measure: 1})
        return self._transact([marker, counter], ok_if_first_exists=True)

    def email_counts(self, tasks: Sequence[str]) -> dict[tuple[str, str], dict[str, int]]:
        """(task, arm) -> sent, delivered, bounced, complained, clicked: batched reads, no scan."""
        arms = ("emailed", "holdout")
        rows = self._rows_raw([{"pk": f"email#{t}", "sk": f"arm#{arm}"} for t in tasks for arm in arms])
        return {
            (pk[len("email#") :], sk[len("arm#") :]): {k: int(v) for k, v in row.items() if isinstance(v, Decimal)}
            for (pk, sk), row in rows.items()
        }

    def _rows_raw(self, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """(pk, sk) -> the item, for the keys that exist: BatchGetItem calls of 100."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in batches.batch_get(self._call, self._table, [_av(k) for k in keys], consistent=False):
            item = _py(raw)
            out[(str(item["pk"]), str(item["sk"]))] = item
        return out

    # --- the write path -----------------------------------------------------------------------

    def _transact(self, items: list[dict[str, Any]], ok_if_first_exists: bool = False) -> bool:
        """True when written; False when the first item's condition failed (already done)."""
        return self._transact_old(items, ok_if_first_exists) is None

    def _transact_old(self, items: list[dict[str, Any]], ok_if_first_exists: bool = True) -> dict[str, Any] | None:
        """None when written; the first item's stored values when its condition failed."""
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed" and ok_if_first_exists:
                return _py(reasons[0].get("Item") or {})
            if aws.is_transient(exc) or aws.error_code(exc) == "TransactionCanceledException":
                raise StoreUnavailable(aws.error_code(exc)) from None
            raise
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return None

    def _call(self, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(**params)
        except ClientError as exc:
            if aws.is_transient(exc):
                raise StoreUnavailable(aws.error_code(exc)) from None
            raise
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from None


def _minute(minute: int) -> str:
    return f"m#{minute:010d}"


def _decimal(x: float) -> Decimal:
    return Decimal(str(round(x, 3)))


def _days_between(first: str, later: str) -> int:
    a = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
    b = datetime.strptime(later, "%Y-%m-%d").replace(tzinfo=UTC)
    return (b - a).days
