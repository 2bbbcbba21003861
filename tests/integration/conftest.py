import pytest

from redflag_local.stack import LocalStack

LANDING = {"label": "creating a landing page", "threshold_seconds": 900, "expected_seconds": 600}


@pytest.fixture
def stack():
    """template.yaml deployed into moto; handlers imported with the environment it gives them."""
    with LocalStack() as s:
        s.put_rules({"create_landing_page": LANDING})
        yield s


def started(user_id, email=None, name=None, **extra):
    user = {k: v for k, v in {"email": email, "name": name}.items() if v}
    return {"type": "task_started", "task": "create_landing_page", "user_id": user_id, "user": user} | extra


def completed(user_id, **extra):
    return {"type": "task_completed", "task": "create_landing_page", "user_id": user_id} | extra
