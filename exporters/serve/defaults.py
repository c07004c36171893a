"""The daemon's defaults that the command line shows in its help (importing nothing else)."""

from __future__ import annotations

__all__ = ["DEFAULT_PORT"]

#: Default port of ``certscan serve``. The Prometheus wiki page "Default port allocations" hands
#: out 9100-9999 to exporters (that block is fully allocated) and 9090-9093 to Prometheus,
#: Pushgateway and Alertmanager, so every port there belongs to some known exporter. 10943 is
#: outside that block, not in the allocation list, and not in /etc/services.
DEFAULT_PORT = 10943
