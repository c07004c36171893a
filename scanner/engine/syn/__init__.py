"""Stateless SYN discovery: which targets of a plan answer at all, before any TLS handshake.

Theory of operation
-------------------
A connect() scan pays a socket, a descriptor and the whole connect timeout for every address
that never answers. Here raw ``IPPROTO_TCP`` sockets (:mod:`scanner.engine.syn.sockets`) send
one SYN per target at a fixed rate (:mod:`scanner.engine.syn.scan`); the SYN's sequence number
is a keyed hash of its 4-tuple (:mod:`scanner.engine.syn.cookie`), so a SYN-ACK or RST is
matched to its probe with no record of the SYN beyond a bounded window of probes in flight.
The packets themselves are built and parsed by pure code (:mod:`scanner.engine.syn.packet`).
Hosts that answered SYN-ACK are handed on, in plan order, to the normal TLS engine
(``scanner.engine.crew``); the kernel, holding no socket for the SYN-ACKs, answers each with a
RST.

Imports only run down: ``scanner.models`` and the standard library; nothing from ``sweep`` or
``cli``. The faces it hands on: ``packet``, ``cookie``, ``scan.syn_scan`` (with its settings,
verdicts and counts), ``sockets.RawSockets`` and ``sockets.raw_privilege``.
"""
