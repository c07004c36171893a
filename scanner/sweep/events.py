"""How the sweep use case reports while it runs, without knowing who listens.

Theory of operation
-------------------
:func:`scanner.sweep.run.run` tells a :class:`SweepEvents` three things: a one-line ``note``
(plain text, already made safe with :func:`scanner.text.safe`), the ``live`` progress of the
targets (a context manager around the sweep whose value is called on every tick) and the
``finished`` counters (the summary). The CLI's implementation prints with rich
(``scanner.cli.console.ConsoleEvents``), the daemon's logs (``exporters.serve.log.LogEvents``);
:class:`SilentEvents` says nothing. Nothing on this floor imports typer or rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from scanner.sweep.counters import SweepCounters

__all__ = ["SilentEvents", "SweepEvents", "Tick"]

#: Called by the pipeline after each completed target (cheap; the listener throttles).
Tick = Callable[[], None]


class SweepEvents(Protocol):
    """The listener of one sweep (see the module docstring)."""

    def note(self, text: str) -> None:
        """One line for the operator (a warning, a resume, where a report went)."""

    def live(self, counters: SweepCounters) -> AbstractContextManager[Tick]:
        """Show ``counters`` while the sweep runs; the value is called on every tick."""

    def finished(self, counters: SweepCounters, *, scan_id: int | None, db_label: str) -> None:
        """The sweep is over (finished or interrupted): its summary."""


def _nothing() -> None:
    return None


@contextmanager
def quiet_progress() -> Iterator[Tick]:
    """A ``live`` that shows nothing."""
    yield _nothing


class SilentEvents:
    """Says nothing: tests, and callers that report the outcome themselves."""

    def note(self, text: str) -> None:
        return None

    def live(self, counters: SweepCounters) -> AbstractContextManager[Tick]:
        return quiet_progress()

    def finished(self, counters: SweepCounters, *, scan_id: int | None, db_label: str) -> None:
        return None
