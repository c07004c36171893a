"""Whether a negotiated key exchange group resists a quantum adversary, by name (pure).

The engine records the group as OpenSSL names it (``Handshake.group``): ``X25519MLKEM768``,
``SecP256r1MLKEM768``, ``SecP384r1MLKEM1024``, the pure ``MLKEM512``/``768``/``1024``, the
draft ``X25519Kyber768Draft00``, or a classical group (``x25519``, ``secp256r1``, ``ffdhe2048``).
A group is post-quantum when its name holds an ML-KEM or Kyber component. TLS 1.2 and older
have no post-quantum key exchange at all, whatever the group.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_post_quantum", "pq_gap"]

_PQ: Final = re.compile(r"mlkem|kyber", re.IGNORECASE)
_BEFORE_TLS13: Final = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"})


def is_post_quantum(group: str) -> bool:
    """Whether ``group`` (an OpenSSL group name) includes a post-quantum KEM."""
    return _PQ.search(group) is not None


def pq_gap(tls_version: str | None, group: str | None) -> str | None:
    """Why the key exchange is not post-quantum (a short phrase), or ``None`` when it is, or
    when nothing is known (no handshake; a TLS 1.3 observation stored without its group)."""
    if tls_version in _BEFORE_TLS13:
        return f"{tls_version} has no post-quantum key exchange"
    if tls_version is None or group is None:
        return None
    if is_post_quantum(group):
        return None
    return f"the key exchange group is {group}, a classical group only"
