"""certscan: find every TLS certificate on a network and never let one expire by surprise.

General layout
--------------
Each folder is one floor; imports only run down (``make lint`` checks it with the import
contract in ``pyproject.toml``, counting imports inside functions and under ``TYPE_CHECKING``).
Top to bottom:

=======================  =====================================================================
``scanner.cli``          the ``certscan`` command line (typer, rich): parse, call, print
``exporters.serve``      the daemon: schedules, HTTP API, live report, metrics endpoint
``exporters.hooks``,     renewal actions (command, webhook, ACME); the Prometheus collector;
``exporters.prometheus``, the textfile export
``exporters.textfile``
``scanner.zones``        distributed sweeps on Celery (dispatch, agents, ingest, wire format)
``scanner.sweep``        the sweep use case: plan, engine, parse, store, judge, report
``reports``              policy and finding rules (pure), assessment, report output, renderers
``scanner.inventory``    the SQLModel inventory (SQLite, PostgreSQL) and its migrations
``scanner.engine``,      trio I/O: connections, TLS, STARTTLS, SNI discovery; the loopback lab;
``scanner.lab``,         certificate files, bundles and keystores read from disk (bounded)
``scanner.files``
``scanner.plan``         what to scan: targets, shards, resolution, list files
``scanner.staple``       the stapled OCSP response, parsed
``scanner.parse``,       DER to ``CertInfo``; outcomes to JSON
``scanner.serialize``
``scanner.models``,      the shared vocabulary: data types, the error tree, safe text
``scanner.errors``,
``scanner.text``
=======================  =====================================================================

Modules on one floor import each other without cycles. Only ``scanner.cli`` imports typer or
rich; the floors below report through plain data and the sweep's events interface.
"""

__version__ = "0.1.0"
