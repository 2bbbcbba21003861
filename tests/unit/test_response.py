"""Response rate, pure (issue 15): SES tracks clicks on the help link only, and what each SES event says of
its email (sent, delivered, bounced, complained, clicked) is counted for its rule once per email."""

import pytest

from redflag import kinds
from redflag.channels import email as email_channel
from redflag.core import timers
from redflag.core.events import EventType, UserInfo
from redflag.core.timers import TimerKey
from redflag.kinds import Rule
from redflag.services.feedback import FeedbackService, SesEvent, response_of
from redflag.services.learning import Flagged, Fold
from tests.unit.test_feedback import UNTIL, Markers, Sender, documented, event

T0 = 1_800_000_000.0
HELP = "https://help.example.com/pages?a=1&b=2"
ALERT = [{"name": "X-RedFlag-Alert", "value": "u-1/page/default/1800000000000/user"}]
CLICKED_HELP = {"click.linkTags": {"redflag": ["help"]}, "mail.headers": ALERT}


def flagged(rule):
    info = UserInfo(email="ada@example.com", name="Ada")
    t = kinds.apply_event(None, TimerKey(user_id="u1", task="t"), EventType.TASK_STARTED, T0, rule, T0, info).timer
    return timers.expire(t, T0 + 1200)


def unsubscribe(user, address):
    return "https://x.example/unsub?token=abc"


# --- SES click tracking: the help link only --------------------------------------------------------------


def test_the_default_email_tracks_its_help_link_and_nothing_else():
    email = email_channel.compose_email(flagged(Rule(label="pages", threshold_seconds=60, help_url=HELP)),
                                        T0 + 1200, unsubscribe)  # fmt: skip
    assert '<a ses:tags="redflag:help;" href="https://help.example.com/pages?a=1&amp;b=2">' in email.html
    assert '<a ses:no-track href="https://x.example/unsub?token=abc">Unsubscribe</a>' in email.html
    assert email.html.count("<a ") == 2 and email.unsubscribe_url == "https://x.example/unsub?token=abc"


def test_a_rules_own_email_tracks_its_help_links_only():
    template = {
        "subject": "s",
        "text": "t",
        "html": "<p><a href='{help_url}'>help</a> <A HREF=\"https://shop.example/\" class=x>shop</A>\n"
        "<a\nhref='{help_url}'>again</a> <a ses:no-track href='https://x.example/'>mine</a></p>",
    }
    rule = Rule(label="pages", threshold_seconds=60, help_url=HELP, email=template)
    page = email_channel.compose_email(flagged(rule), T0 + 1200, unsubscribe).html
    assert page.count('ses:tags="redflag:help;"') == 2  # both help links, the second over a line break
    assert '<A ses:no-track HREF="https://shop.example/" class=x>shop</A>' in page
    assert page.count("ses:no-track") == 3  # the shop link, the one it had, the footer's unsubscribe link
    no_help = Rule(label="pages", threshold_seconds=60, email=template | {"html": "<a href='{help_url}'>h</a>"})
    assert "ses:tags" not in email_channel.compose_email(flagged(no_help), T0 + 1200).html  # no help_url: no tag


# --- what an SES event counts as, for its rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "changes", "measure"),
    [
        ("send", {}, "sent"),
        ("delivery", {}, "delivered"),
        ("bounce_permanent", {}, "bounced"),
        ("bounce_transient", {}, "bounced"),
        ("bounce_on_suppression_list", {}, "bounced"),
        ("complaint", {}, "complained"),
        ("complaint", {"complaint.complaintFeedbackType": "not-spam"}, None),
        ("click", {}, None),  # SES's example: a link without our tag
        ("click", CLICKED_HELP, "clicked"),
        ("delivery_delay", {}, None),
        ("reject", {}, None),
    ],
)
def test_each_event_counts_as_what_it_says_of_its_email(sample, changes, measure):
    assert response_of(event(sample, **changes)) == measure


class Responses:
    """The stats table's once-per-email-and-measure counter."""

    def __init__(self):
        self.counts, self.seen = {}, set()

    def count_email(self, message_id, task, arm, measure, now):
        if (message_id, measure) in self.seen:
            return False
        self.seen.add((message_id, measure))
        self.counts[(task, arm, measure)] = self.counts.get((task, arm, measure), 0) + 1
        return True


def test_a_click_on_the_help_link_is_counted_as_a_response_once_for_the_emails_rule():
    responses = Responses()
    svc = FeedbackService(lambda: b"s" * 64, Markers(), Sender(), responses, lambda: T0)
    click = event("click", **CLICKED_HELP)
    first = svc.handle(click, UNTIL)
    assert (first.response, first.counted) == ("clicked", True)
    again = svc.handle(click, UNTIL)  # SNS delivering it twice, or Lambda retrying
    later = svc.handle(event("click", **CLICKED_HELP | {"click.timestamp": "2017-08-10T00:00:00.000Z"}), UNTIL)
    assert (again.counted, later.counted) == (False, False)  # a second click on the same email: still one
    assert responses.counts == {("page", "emailed", "clicked"): 1}
    assert first.summary()["response"] == "clicked"
    svc.handle(event("click", **{"mail.headers": []}), UNTIL)  # not a Red Flag email: no rule to count for
    assert responses.counts == {("page", "emailed", "clicked"): 1}


def test_the_rule_and_arm_come_from_the_emails_own_header():
    mail = event("delivery", **{"mail.headers": [{"name": "x-redflag-alert", "value": "u%2F1/page/i%201/7/user"}]})
    assert mail.mail.alert == ("u/1", "page", "i 1", "7")
    assert SesEvent.model_validate(documented("delivery")).mail.alert is None


# --- retention: who enters a rule's cohort ---------------------------------------------------------------


def test_a_flagged_user_of_an_account_enters_the_cohort_of_their_arm_and_the_state_round_trips():
    fold = Fold()
    rule = Rule(label="pages", threshold_seconds=60, holdout_percent=0)
    info = UserInfo(email="ada@example.com", account_id="acme")
    key = TimerKey(user_id="u1", task="t")
    armed = kinds.apply_event(None, key, EventType.TASK_STARTED, T0, rule, T0, info).timer
    flag = timers.expire(armed, T0 + 1200).model_copy(update={"flagged_at": T0 + 1200})
    fold.add("MODIFY", False, armed, flag)
    assert fold.cohort == {("acme", "u1", "t"): Flagged(T0 + 1200, "emailed")}
    assert Fold.from_state(fold.to_state()).cohort == fold.cohort
    alone = Fold()  # no account: their activity is not counted, so they are in no cohort
    no_account = kinds.apply_event(None, key, EventType.TASK_STARTED, T0, rule, T0, UserInfo()).timer
    alone.add("MODIFY", False, no_account, timers.expire(no_account, T0 + 1200))
    assert alone.cohort == {} and alone.tasks[("t", "*")].counts["flagged_emailed"] == 1
