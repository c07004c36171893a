"""The discovery modes a sweep can be asked for (``--discover``, ``--syn-retries``,
``--syn-wait``), checked without loading the SYN scanner: ``scanner.sweep.discover`` runs them.
Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from scanner.engine.syn.defaults import DEFAULT_RETRIES, DEFAULT_WAIT
from scanner.errors import UsageError

__all__ = ["MAX_RETRIES", "MAX_WAIT", "MODES", "DiscoverOptions", "parse_options"]

MODES: Final = ("auto", "syn", "connect")
#: ``--syn-retries`` and ``--syn-wait`` at most (a typo should not mean an hour per address).
MAX_RETRIES: Final = 10
MAX_WAIT: Final = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoverOptions:
    """What the user asked for: ``mode`` one of :data:`MODES`; ``retries``/``wait`` for SYN."""

    mode: str = "auto"
    retries: int = DEFAULT_RETRIES
    wait: float = DEFAULT_WAIT


def parse_options(mode: str, retries: int, wait: float) -> DiscoverOptions:
    """The ``--discover``, ``--syn-retries``, ``--syn-wait`` values checked (UsageError)."""
    if mode not in MODES:
        raise UsageError(f"--discover must be one of {', '.join(MODES)} (got {mode!r})")
    if not 0 <= retries <= MAX_RETRIES:
        raise UsageError(f"--syn-retries must be 0 to {MAX_RETRIES} (got {retries})")
    if not 0 < wait <= MAX_WAIT:
        raise UsageError(f"--syn-wait must be above 0 and at most {MAX_WAIT:g} s (got {wait:g})")
    return DiscoverOptions(mode=mode, retries=retries, wait=wait)
