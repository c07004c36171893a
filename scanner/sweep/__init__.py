"""The sweep use case: plan -> engine -> parse -> store -> findings -> report -> after-step.

Theory of operation
-------------------
``options`` holds what a sweep is asked (:class:`SweepOptions`) and what it did
(:class:`SweepReport`); ``run`` is the verb every caller uses (``certscan sweep`` and ``demo``,
``serve`` jobs, the planning half of ``dispatch``). ``pipeline`` drives the engine over a plan
and hands batches to a sink (the inventory, or a zone agent's publisher); ``pool`` forks worker
processes before trio starts and ``parallel`` runs one sharded scan over them; ``counters``
counts what happened. The use case knows no screen: it reports through ``events``
(:class:`SweepEvents`: a note, live progress, the finish), implemented by the CLI (rich) and the
daemon (logging). Renewal hooks are not imported here: the caller passes them as the
``after`` step. Must never import ``scanner.cli``, ``scanner.zones``, ``exporters``, typer or
rich.
"""
