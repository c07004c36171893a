"""``certscan serve``: the long-running daemon.

Theory of operation
-------------------
``config`` reads the ``[serve]`` and ``[jobs.*]`` sections (one-line errors naming the key);
``scheduler`` fires jobs on intervals or cron expressions; ``daemon`` runs each job through the
sweep use case (or dispatches it to a zone), then the renewal hooks, and owns signals (SIGTERM
stops, SIGHUP reloads); ``api`` serves ``/metrics``, health, the live report and the JSON API
described by ``openapi``; ``job_metrics`` exports the schedule; ``log`` writes text or JSON log
lines and implements the sweep's events as log records. Imported only by ``scanner.cli``.
"""
