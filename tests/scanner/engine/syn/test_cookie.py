"""SYN cookies: deterministic under one secret, different under another, tied to the 4-tuple."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.engine.syn.cookie import Cookies

addr = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
port = st.integers(1, 0xFFFF)


@given(addr, port, addr, port)
def test_cookie_is_32_bits_and_acknowledged_plus_one(
    la: bytes, lp: int, ra: bytes, rp: int
) -> None:
    jar = Cookies(b"k" * 16)
    c = jar.cookie(la, lp, ra, rp)
    assert 0 <= c <= 0xFFFFFFFF
    assert c == Cookies(b"k" * 16).cookie(la, lp, ra, rp)
    assert jar.matches(la, lp, ra, rp, (c + 1) & 0xFFFFFFFF)
    assert not jar.matches(la, lp, ra, rp, c)


def test_each_field_of_the_tuple_changes_the_cookie() -> None:
    jar = Cookies(b"secret")
    base = (b"\x7f\0\0\1", 40000, b"\x7f\0\0\2", 443)
    c = jar.cookie(*base)
    variants = [
        (b"\x7f\0\0\3", 40000, b"\x7f\0\0\2", 443),
        (b"\x7f\0\0\1", 40001, b"\x7f\0\0\2", 443),
        (b"\x7f\0\0\1", 40000, b"\x7f\0\0\4", 443),
        (b"\x7f\0\0\1", 40000, b"\x7f\0\0\2", 444),
        (b"\x7f\0\0\2", 40000, b"\x7f\0\0\1", 443),  # swapped addresses
    ]
    assert all(jar.cookie(*v) != c for v in variants)
    assert Cookies(b"other").cookie(*base) != c


def test_random_secrets_differ_per_scan() -> None:
    tup = (b"\1" * 4, 1, b"\2" * 4, 2)
    assert len({Cookies().cookie(*tup) for _ in range(8)}) > 1


@pytest.mark.parametrize("secret", [b"", b"x" * 65])
def test_secret_length_is_checked(secret: bytes) -> None:
    with pytest.raises(ValueError, match="secret"):
        Cookies(secret)
