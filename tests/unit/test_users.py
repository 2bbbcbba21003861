"""redflag.services.users on in-memory fakes: one-click unsubscribe writes the markers the alerting path checks,
a bad token writes nothing, subscription changes both ways, erasure takes the user's records (one
Query of their partition) and keeps their opt-out."""

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import ValidationError

from redflag.adapters.secrets import suppression_keys, unsubscribe_links
from redflag.adapters.user_records import DynamoUserRecords, accounts_of
from redflag.core import unsubscribe
from redflag.core.unsubscribe import InvalidToken
from redflag.services.users import MAX_TOKEN_CHARS, SubscriptionChange, UsersService, user_id_error

SECRET = b"k" * 64
NOW = 1_800_000_000.0
DAY = 86400


class FakeStore:
    def __init__(self, found=()):
        self.items = {(i["pk"], i["sk"]): dict(i) for i in found}
        self.queries: list[str] = []
        self.deletes: list[list[dict]] = []

    def query_partition(self, pk):
        self.queries.append(pk)
        return [dict(i) for (p, _), i in sorted(self.items.items()) if p == pk]

    def get_items(self, keys):
        return {(k["pk"], k["sk"]): self.items[(k["pk"], k["sk"])] for k in keys if (k["pk"], k["sk"]) in self.items}

    def delete_keys(self, keys):
        self.deletes.append(list(keys))
        for k in keys:
            self.items.pop((k["pk"], k["sk"]), None)
        return len(keys)


class FakeSuppressions:
    def __init__(self):
        self.keys: dict[str, float] = {}

    def suppress(self, keys, at):
        for k in keys:
            self.keys.setdefault(k, at)

    def allow(self, keys):
        for k in keys:
            self.keys.pop(k, None)

    def suppressed(self, keys):
        return any(k in self.keys for k in keys)


class FakeMembers:
    def __init__(self):
        self.forgotten: list[tuple[str, list[str]]] = []

    def forget(self, user_id, accounts):
        self.forgotten.append((user_id, list(accounts)))
        return len(accounts)


class Clock:
    def __init__(self):
        self.t = NOW

    def __call__(self):
        return self.t


def make(found=()):
    store, marks, members, clock = FakeStore(found), FakeSuppressions(), FakeMembers(), Clock()
    return UsersService(DynamoUserRecords(store), marks, members, lambda: SECRET, clock), store, marks, members, clock


def link_token(user_id, email, days=180, secret=SECRET):
    """The token of the link the alerts function puts in an email (its own code builds it)."""
    url = unsubscribe_links("https://x.example/Prod/v1/unsubscribe", lambda: secret, days, lambda: NOW)(user_id, email)
    return parse_qs(urlparse(url).query)["token"][0]


def alert_path_suppressed(marks, user_id, email):
    """What redflag.adapters.people.DynamoPeople.suppressed asks: any of these markers."""
    return marks.suppressed(suppression_keys(lambda: SECRET)(user_id, email))


# --- one-click unsubscribe ----------------------------------------------------------------------


def test_the_emails_link_opts_out_the_user_and_the_address_the_alerting_path_checks():
    service, _, marks, _, _ = make()
    who = service.unsubscribe(link_token("u1", "Ada@Example.com"))
    assert who.user_id == "u1"
    assert len(marks.keys) == 2
    assert alert_path_suppressed(marks, "u1", None)  # by user id
    assert alert_path_suppressed(marks, "someone-else", "ada@example.com")  # by address, whatever the id
    assert not alert_path_suppressed(marks, "u2", "grace@example.com")
    assert not any("u1" in k or "ada" in k for k in marks.keys)  # keyed hashes, not the values


def test_a_second_post_changes_nothing():
    service, _, marks, _, clock = make()
    token = link_token("u1", "ada@example.com")
    service.unsubscribe(token)
    first = dict(marks.keys)
    clock.t += 3600
    service.unsubscribe(token)
    assert marks.keys == first


def test_a_token_without_an_address_opts_out_the_user_id_only():
    service, _, marks, _, _ = make()
    service.unsubscribe(link_token("u1", None))
    assert list(marks.keys) == [unsubscribe.suppression_key(SECRET, "user", "u1")]


def _altered(token: str) -> str:
    i = len(token) // 3
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_altered(link_token("u1", "ada@example.com")), "forged"),
        (link_token("u1", "ada@example.com", secret=b"another stack's secret"), "forged"),
        (link_token("u1", "ada@example.com").split(".")[0] + ".", "forged"),
        ("no-dot-at-all", "malformed"),
        ("a.b.c", "malformed"),
        ("", "malformed"),
        ("x" * (MAX_TOKEN_CHARS + 1), "malformed"),
        ("é.é", "malformed"),
    ],
)
def test_a_bad_token_writes_nothing(token, reason):
    service, _, marks, _, _ = make()
    with pytest.raises(InvalidToken) as err:
        service.unsubscribe(token)
    assert str(err.value) == reason
    with pytest.raises(InvalidToken):
        service.check(token)
    assert marks.keys == {}


def test_an_expired_token_is_refused_and_one_a_second_before_is_not():
    service, _, marks, _, clock = make()
    token = link_token("u1", "ada@example.com", days=180)
    clock.t = NOW + 180 * DAY
    assert service.check(token).user_id == "u1"
    clock.t += 1
    with pytest.raises(InvalidToken, match="expired"):
        service.unsubscribe(token)
    assert marks.keys == {}


def test_checking_a_token_writes_nothing():
    service, _, marks, _, _ = make()
    assert service.check(link_token("u1", "ada@example.com")).email_hash
    assert marks.keys == {}


# --- subscription (API key) ----------------------------------------------------------------------


def test_opting_out_and_back_in_by_id_and_address():
    service, _, marks, _, _ = make()
    state = service.set_subscription("u1", SubscriptionChange(subscribed=False, email="Ada@Example.com"))
    assert (state.subscribed, state.address_included) == (False, True)
    assert alert_path_suppressed(marks, "u1", None) and alert_path_suppressed(marks, "u9", "ada@example.com")
    state = service.set_subscription("u1", SubscriptionChange(subscribed=True, email="ada@example.com"))
    assert (state.subscribed, state.address_included) == (True, True)
    assert marks.keys == {}


def test_opting_back_in_without_the_address_leaves_the_addresss_opt_out():
    service, _, marks, _, _ = make()
    service.unsubscribe(link_token("u1", "ada@example.com"))
    service.set_subscription("u1", SubscriptionChange(subscribed=True))
    assert not alert_path_suppressed(marks, "u1", None)
    assert alert_path_suppressed(marks, "u1", "ada@example.com")  # the address opted out too: say it to resubscribe


@pytest.mark.parametrize(
    "body",
    [
        {"subscribed": "yes"},
        {"subscribed": 1},
        {},
        {"subscribed": True, "extra": 1},
        {"subscribed": True, "email": "x"},
    ],
)
def test_a_subscription_change_is_checked(body):
    with pytest.raises(ValidationError):
        SubscriptionChange.model_validate_json(json.dumps(body))


@pytest.mark.parametrize(
    ("user_id", "ok"), [("u-1", True), ("a/b#c", True), ("", False), ("x" * 129, False), ("a\nb", False)]
)
def test_a_user_id_follows_the_events_apis_rule(user_id, ok):
    assert (user_id_error(user_id) is None) is ok
    if not ok:
        assert user_id_error(user_id).startswith("user_id: ")


# --- erasure -------------------------------------------------------------------------------------


def _timer(user, task, account=None):
    item = {"pk": user, "sk": f"task#{task}#default", "kind": "task", "state": "open", "user_id": user}
    return item | ({"user": {"email": f"{user}@example.com", "account_id": account}} if account else {})


def _held(user="u1"):
    deferred_timer = {"key": {"user_id": user, "task": "t3"}, "user": {"account_id": "gamma"}}
    return [
        _timer(user, "t1", "acme"),
        _timer(user, "t2"),
        {"pk": user, "sk": "user", "kind": "user", "account_id": "beta"},
        {"pk": user, "sk": "deferred#abc", "kind": "deferred", "timer": json.dumps(deferred_timer)},
        {"pk": user, "sk": "emails", "kind": "email_log", "sent": "[]"},
    ]


def _others():
    return [
        _timer("u2", "t1", "acme"),
        {"pk": "u2", "sk": "user", "kind": "user", "account_id": "acme"},
        {"pk": "esc#user#u2", "sk": "escalation"},
        {"pk": "esc#account#acme", "sk": "escalation"},
        {"pk": "account#acme", "sk": "flag#t1#2027-W02", "kind": "account_flag"},
    ]


def test_erase_removes_the_users_records_and_escalation_in_one_query_and_keeps_everyone_elses():
    found = [*_held("u1"), {"pk": "esc#user#u1", "sk": "escalation"}, *_others()]
    service, store, _, members, _ = make(found)
    erased = service.erase("u1")
    assert (erased.user_id, erased.deleted, erased.suppressed) == ("u1", 6, False)
    assert store.queries == ["u1"]  # one Query of the user's partition, no scan
    assert len(store.deletes) == 1
    assert not [k for k in store.items if k[0] in ("u1", "esc#user#u1")]
    assert sorted(store.items) == sorted((i["pk"], i["sk"]) for i in _others())
    assert members.forgotten == [("u1", ["acme", "beta", "gamma"])]


def test_erasing_an_opted_out_user_keeps_only_the_opt_out():
    service, store, marks, _, _ = make(_held("u1"))
    service.unsubscribe(link_token("u1", "ada@example.com"))
    erased = service.erase("u1")
    assert (erased.deleted, erased.suppressed) == (5, True)
    assert store.items == {}
    assert alert_path_suppressed(marks, "u1", None) and alert_path_suppressed(marks, "new-id", "ada@example.com")


def test_erasing_an_unknown_user_deletes_nothing_and_is_fine_twice():
    service, store, _, members, _ = make(_others())
    for _ in range(2):
        erased = service.erase("nobody")
        assert (erased.deleted, erased.suppressed) == (0, False)
    assert store.deletes == [] and members.forgotten == []


def test_a_user_id_shaped_like_another_partition_erases_only_user_records():
    """Event user ids may contain '#': erasing user 'account#acme' must not take the account's flags."""
    weird = {"pk": "account#acme", "sk": "user", "kind": "user"}
    service, store, _, _, _ = make([*_others(), weird])
    assert service.erase("account#acme").deleted == 1
    assert ("account#acme", "flag#t1#2027-W02") in store.items and ("account#acme", "user") not in store.items


def test_accounts_are_read_from_whatever_record_names_one():
    assert accounts_of({"account_id": "a", "user": {"account_id": "b"}}) == {"a", "b"}
    assert accounts_of({"timer": json.dumps({"user": {"account_id": "c"}})}) == {"c"}
    assert accounts_of({"timer": "not json", "user": "not a map", "account_id": 7}) == set()
    assert accounts_of({"timer": json.dumps(["a list"])}) == set()


def test_the_service_imports_without_boto3():
    code = "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\nimport redflag.services.users"
    subprocess.run([sys.executable, "-c", code], check=True)
