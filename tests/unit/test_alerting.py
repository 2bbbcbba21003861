"""The alerting service on in-memory fakes: a stream batch handled as a batch, exactly once per channel."""

from redflag import kinds
from redflag.core.events import EventType, UserInfo
from redflag.core.timers import TimerKey, expire
from redflag.kinds import Rule
from redflag.kinds.usage_drop import AccountFlag
from redflag.services.alerting import AlertingService, Interventions
from redflag.services.changes import AccountFlagged, TimerChanged
from redflag.services.sending import Sender
from tests.fakes import MemoryPeople, MemorySendOnce, NoParking, RecordingSender

T0 = 1_800_000_000.0
RULE = Rule(label="creating a landing page", threshold_seconds=900)


def flag(user: str, instance: str = "default", account: str | None = None, at: float = T0) -> TimerChanged:
    key = TimerKey(user_id=user, task="page", instance_id=instance)
    info = UserInfo(email=f"{user}@example.com", name=user.upper(), account_id=account)
    armed = kinds.apply_event(None, key, EventType.TASK_STARTED, at, RULE, at, info).timer
    flagged = expire(armed, at + 901)
    return TimerChanged("MODIFY", False, armed, flagged)


def make(**policy):
    sender, once, parking, people = RecordingSender(), MemorySendOnce(), NoParking(), MemoryPeople()
    service = AlertingService(Sender(sender.senders(), once, parking), people, Interventions(**policy))
    return service, sender, once, parking, people


def batch(*changes):
    return [(str(i), c) for i, c in enumerate(changes)]


def test_two_red_flags_of_one_user_write_their_state_once_and_the_cap_counts_both():
    service, sender, _, _, people = make(cap=1)
    out = service.handle(batch(flag("a", "p-1"), flag("a", "p-2"), flag("b")), T0 + 902, T0 + 930)
    assert people.calls == ["load", "save", "save"]  # one read for the batch, one write per user
    assert [h.email for h in out.handled.values()] == ["sent", "capped", "sent"]
    assert sorted(a.to_address for a in sender.sent if a.channel == "user") == ["a@example.com", "b@example.com"]
    assert len(people.users["a"].emails.sent) == 1 and len(people.users["a"].escalation.flags) == 2


def test_a_state_written_meanwhile_is_read_again_and_decided_again_and_nothing_is_sent_twice():
    service, sender, _, _, people = make()
    service.handle(batch(flag("a", "p-1")), T0 + 902, T0 + 930)
    people.steal = {("user", "a")}  # a concurrent writer bumps a's state between our read and our write
    out = service.handle(batch(flag("a", "p-2")), T0 + 903, T0 + 930)
    assert not out.failed and out.handled["0"].email == "sent"
    assert people.calls.count("load") == 3  # the batch's read, and a's again after the lost write
    assert len(people.users["a"].emails.sent) == 2
    assert len([a for a in sender.sent if a.channel == "user"]) == 2


def test_a_channel_failing_for_now_fails_only_its_record_and_the_retry_sends_only_what_was_not_sent():
    service, sender, once, _, _ = make()
    sender.failing = {"cs"}
    first = service.handle(batch(flag("a"), flag("b")), T0 + 902, T0 + 930)
    assert first.failed == ["0", "1"] and {f.channel for h in first.handled.values() for f in h.failures} == {"cs"}
    assert sorted(a.channel for a in sender.sent) == ["user", "user"]
    assert "release" in once.calls
    sender.failing = set()
    again = service.handle(batch(flag("a"), flag("b")), T0 + 905, T0 + 935)
    assert not again.failed
    assert sorted(a.channel for a in sender.sent) == ["cs", "cs", "user", "user"]  # each email once
    assert [h.new for h in again.handled.values()] == [False, False]  # a retry counts no red flag twice


def test_a_refusal_is_parked_once_and_kept_so_the_retried_batch_does_not_send_it_again():
    service, sender, _, parking, _ = make()
    sender.refusing = {"user"}
    out = service.handle(batch(flag("a")), T0 + 902, T0 + 930)
    assert out.handled["0"].rejected == [("user", "MessageRejected")] and not out.failed
    service.handle(batch(flag("a")), T0 + 903, T0 + 931)
    assert len(parking.parked) == 1 and [a.channel for a in sender.sent] == ["cs"]


def test_an_account_flag_reaches_customer_success_without_reading_any_user_state():
    service, sender, _, _, people = make()
    rule = Rule(kind="usage_drop", label="weekly usage", drop_percent=50)
    drop = AccountFlag(account_id="acme", task="weekly", week="2027-W03", actives_before=10, actives_after=2,
                       rule=rule, flagged_at=T0)  # fmt: skip
    out = service.handle(batch(AccountFlagged(drop)), T0, T0 + 30)
    assert [a.channel for a in sender.sent] == ["cs"] and out.handled["0"].reason == "usage_drop"
    assert people.calls == []


def test_the_third_red_flag_of_an_account_escalates_once_across_its_users():
    service, sender, _, _, _ = make(escalate_after=3)
    service.handle(batch(flag("a", account="acme"), flag("b", account="acme")), T0 + 902, T0 + 930)
    service.handle(batch(flag("c", account="acme"), flag("c", "p-2", account="acme")), T0 + 903, T0 + 931)
    escalations = [a for a in sender.sent if a.channel == "cs" and "escalation" in a.alert_id]
    assert len(escalations) == 1 and escalations[0].message["account_id"] == "acme"
