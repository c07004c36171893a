"""Exporters: Prometheus, the serve daemon and renewal hooks (later issues)."""
