"""The engine: trio I/O from a target to an outcome, with no parsing and no database.

Theory of operation
-------------------
``crew`` drives many targets at once under explicit limits (concurrency, new connections per
second, connections per address, handshake slots) and returns a classified
``Handshake | ScanFailure`` for each. ``net`` connects a socket that can tell ``refused`` from
``unreachable``; ``tls`` runs pyOpenSSL over memory BIOs and classifies every failure in one
table; ``rehandshake`` probes which protocol versions a server accepts; ``starttls/`` speaks
each protocol's plaintext preamble; ``discovery`` finds more names to try (SANs, PTR, a names
file). Every read is bounded and every phase is a cancel scope. Imports only ``scanner.plan``
and the vocabulary below it.
"""
