"""The edges that act on the inventory: ``prometheus`` (the collector and alert rules),
``textfile`` (the node-exporter textfile export), ``hooks/`` (renewal actions) and ``serve/``
(the daemon, on top of them all)."""
