"""The live report at ``/``, built once per inventory change instead of on every request.

Building the HTML report reads and judges the whole inventory (seconds for 100,000 endpoints),
so :class:`LiveReport` keeps the last page with the key it was built for: the inventory's
change marker (:func:`scanner.inventory.marker.change_marker`, one cheap query), the criteria
in force (a SIGHUP reload replaces them) and the UTC date. A page is also rebuilt after
:data:`MAX_AGE` seconds, since "days left" moves with the clock. One build runs at a time;
requests arriving meanwhile wait for it and get its page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import trio

from reports import assess
from reports.output import build_report
from reports.render import get_renderer
from scanner.inventory.marker import change_marker
from scanner.inventory.store import Inventory

__all__ = ["MAX_AGE", "LiveReport"]

#: Seconds a page is served before it is rebuilt even without a change.
MAX_AGE = 300.0

T = TypeVar("T")


class Lane(Protocol):
    """An inventory lane (:class:`exporters.serve.api.Reader`)."""

    async def call(self, fn: Callable[[Inventory], T]) -> T: ...


class LiveReport:
    """The cached page (module docstring). ``builds`` counts real builds (for tests)."""

    def __init__(self, max_age: float = MAX_AGE) -> None:
        self.max_age = max_age
        self.builds = 0
        self._key: tuple[object, ...] | None = None
        self._page = b""
        self._built_at = 0.0
        self._lock = trio.Lock()

    async def page(self, lane: Lane, criteria: assess.Criteria) -> bytes:
        """The HTML page, read through the API's inventory ``lane``."""
        async with self._lock:
            marker = await lane.call(lambda inv: change_marker(inv.engine))
            now = datetime.now(UTC)
            key = (marker, id(criteria), now.date())
            fresh = time.monotonic() - self._built_at < self.max_age
            if key == self._key and fresh:
                return self._page
            found = await lane.call(lambda inv: assess.read_views(inv, criteria=criteria, now=now))
            shown = assess.select(found, assess.ReportFilter(), now=now)
            html = await trio.to_thread.run_sync(
                lambda: get_renderer("html").render(
                    build_report(shown, generated_at=now, scan=None)
                )
            )
            self._key, self._page, self._built_at = key, html, time.monotonic()
            self.builds += 1
            return html
