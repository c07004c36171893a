"""What to scan: the operator's input turned into a lazy, exact plan of targets.

Theory of operation
-------------------
``targets`` parses ranges, names, ports and exclusions into a :class:`TargetPlan` (never
materialised: a /8 costs a few intervals), with the public-address guard, blocklists and
``--max-targets``; ``shards`` cuts a plan into a seeded permutation of N shards; ``resolve`` is
the DNS edge (the only I/O here besides ``lists``, which reads a list file). Imports only the
vocabulary below it.
"""
