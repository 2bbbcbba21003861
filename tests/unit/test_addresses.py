"""Issue 15, channel defect 6: a local part over 64 octets (RFC 5321 4.5.3.1.1) is refused at the
door, saying why, instead of being accepted and refused by SES when the alert is sent."""

import pytest
from pydantic import ValidationError

from redflag.core import mime
from redflag.core.events import UserInfo

LOCAL_65 = "a" * 65 + "@example.com"
LOCAL_64 = "a" * 64 + "@example.com"


def test_a_65_octet_local_part_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"too long before the @-sign \(1 character too many\)"):
        mime.checked_address(LOCAL_65)


def test_a_64_octet_local_part_is_accepted():
    assert mime.checked_address(LOCAL_64) == LOCAL_64


def test_the_event_names_the_field_and_the_reason():
    with pytest.raises(ValidationError) as info:
        UserInfo(email=LOCAL_65)
    (error,) = info.value.errors()
    assert error["loc"] == ("email",) and "too long before the @-sign" in error["msg"]
    assert UserInfo(email=LOCAL_64).email == LOCAL_64
