"""The one definition of hostile text, against the shared table."""

from __future__ import annotations

import pytest

from scanner.text import escape, hostile, marked, safe
from tests.hostile import BENIGN, HOSTILE, sample


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_every_hostile_code_point_is_named(ch: str, why: str) -> None:
    assert hostile(ch), why


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_escape_safe_and_marked_leave_none_raw(ch: str, why: str) -> None:
    code = ord(ch)
    for shown in (escape(sample(ch)), safe(sample(ch)), marked(sample(ch))):
        assert ch not in shown, why
        assert shown.startswith("evil")
        assert shown.endswith("gnp.exe")
    assert f"{code:x}" in escape(sample(ch))
    assert f"⟨U+{code:04X}⟩" in marked(sample(ch))


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_passes_through(text: str) -> None:
    assert escape(text) == text
    assert marked(text) == text
    assert not any(hostile(ch) for ch in text)


def test_escapes_are_unambiguous_by_width() -> None:
    assert escape("\x1b") == "\\x1b"
    assert escape("\u202e") == "\\u202e"
    assert escape("\U000e0041") == "\\U000e0041"


def test_safe_bounds_length_after_escaping() -> None:
    assert len(safe("\u202e" * 100, 20)) == 20
    assert safe(None) == ""
