"""The fast path for MAIL/RCPT arguments gives exactly what aiosmtpd's parser gives."""

from __future__ import annotations

from email._header_value_parser import get_angle_addr

from hypothesis import example, given
from hypothesis import strategies as st

from proxy.smtp.session import plain_path

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atom = st.text(alphabet=ATEXT, min_size=1, max_size=8)
label = st.text(alphabet="abcz09-", min_size=1, max_size=8)
plain = st.builds(
    lambda local, domain, rest: f"<{'.'.join(local)}@{'.'.join(domain)}>{rest}",
    st.lists(atom, min_size=1, max_size=3),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["", " SIZE=100", " BODY=8BITMIME SIZE=7", "  x", " "]),
)


def aiosmtpd_reading(arg: str) -> tuple[str, str]:
    address, rest = get_angle_addr(arg)
    return address.addr_spec, rest


@given(plain)
@example("<noreply@example.com> SIZE=12")
@example("<a.b@c.d>")
def test_plain_paths_read_as_aiosmtpd_reads_them(arg: str) -> None:
    assert plain_path(arg) == aiosmtpd_reading(arg)


@given(st.text(max_size=60))
@example('<"a b"@example.com>')
@example("<@route:a@example.com>")
@example("<a@[192.0.2.1]>")
@example("<a@example.com")
@example("a@example.com")
@example("<a..b@example.com>")
def test_anything_else_is_left_to_aiosmtpd(arg: str) -> None:
    fast = plain_path(arg)
    if fast is not None:
        assert fast == aiosmtpd_reading(arg)
