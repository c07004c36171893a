"""SYN discovery's defaults, apart from the scanner so that ``--help`` can show them without
loading trio or opening a socket."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_RATE", "DEFAULT_RETRIES", "DEFAULT_WAIT"]

#: SYNs per second when the user gives no ``--rate``: a LAN's worth, not the internet's.
DEFAULT_RATE: Final = 20_000.0
#: Re-sends to a target that has not answered (``--syn-retries``).
DEFAULT_RETRIES: Final = 1
#: Seconds to wait for replies after the last SYN (``--syn-wait``).
DEFAULT_WAIT: Final = 1.0
