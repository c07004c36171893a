"""The one table of hostile code points every output is tested against.

Each entry is a code point that must never reach a person raw (a terminal, a finding message, a
CSV cell, the HTML report, a log line), with the reason. :data:`BENIGN` holds text that must pass
through unchanged (other scripts, accents, ordinary spaces).
"""

from __future__ import annotations

HOSTILE: tuple[tuple[str, str], ...] = (
    ("\x00", "C0 NUL"),
    ("\x07", "C0 BEL"),
    ("\x09", "C0 tab"),
    ("\x0a", "C0 line feed"),
    ("\x0d", "C0 carriage return"),
    ("\x1b", "C0 escape (terminal sequences)"),
    ("\x7f", "DEL"),
    ("\x85", "C1 next line"),
    ("\x9b", "C1 control sequence introducer"),
    ("\u00ad", "soft hyphen"),
    ("\u034f", "combining grapheme joiner"),
    ("\u061c", "Arabic letter mark"),
    ("\u115f", "Hangul choseong filler"),
    ("\u1160", "Hangul jungseong filler"),
    ("\u17b4", "Khmer vowel inherent AQ"),
    ("\u180e", "Mongolian vowel separator"),
    ("\u200b", "zero-width space"),
    ("\u200c", "zero-width non-joiner"),
    ("\u200d", "zero-width joiner"),
    ("\u200e", "left-to-right mark"),
    ("\u200f", "right-to-left mark"),
    ("\u2028", "line separator"),
    ("\u2029", "paragraph separator"),
    ("\u202a", "left-to-right embedding"),
    ("\u202b", "right-to-left embedding"),
    ("\u202c", "pop directional formatting"),
    ("\u202d", "left-to-right override"),
    ("\u202e", "right-to-left override"),
    ("\u2060", "word joiner"),
    ("\u2061", "function application"),
    ("\u2062", "invisible times"),
    ("\u2063", "invisible separator"),
    ("\u2064", "invisible plus"),
    ("\u2066", "left-to-right isolate"),
    ("\u2067", "right-to-left isolate"),
    ("\u2068", "first strong isolate"),
    ("\u2069", "pop directional isolate"),
    ("\u206a", "inhibit symmetric swapping (deprecated format)"),
    ("\u3164", "Hangul filler"),
    ("\ufeff", "byte-order mark"),
    ("\uffa0", "halfwidth Hangul filler"),
    ("\ufff9", "interlinear annotation anchor"),
    ("\uffff", "noncharacter"),
    ("\u0378", "unassigned"),
    ("\ue000", "private use"),
    ("\U000f0000", "supplementary private use"),
    ("\U000e0001", "language tag"),
    ("\U000e0041", "tag latin capital A"),
    ("\U000e007f", "cancel tag"),
    ("\ud800", "lone surrogate"),
)

BENIGN: tuple[str, ...] = (
    "plain.example",
    "bücher.example",
    "例え.テスト",
    "Ελληνικά",
    "مرحبا",  # right-to-left script without override characters
    "a b\u00a0c",  # ordinary and no-break spaces
    "O=Acme, CN=*.acme.test",
)


def sample(ch: str) -> str:
    """A name with ``ch`` hidden inside it."""
    return f"evil{ch}gnp.exe"
