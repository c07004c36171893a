"""SYN cookies: the sequence number of a probe is a keyed hash of its 4-tuple.

A stateless scanner keeps no record of each SYN it sent; instead the SYN's sequence number is
``BLAKE2b(secret, local address, local port, remote address, remote port)`` truncated to 32
bits, with a secret drawn for each scan. A host that really received the SYN answers with
``ack = seq + 1`` (SYN-ACK or RST-ACK), so a reply is accepted only when its acknowledgement
number is the cookie of the 4-tuple it came on, plus one. A forged reply must guess 32 bits
without knowing the secret; a reply from an address or port we never probed cannot match.

Pure: the secret is given (``secrets.token_bytes`` by default), nothing else is random.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from typing import Any, Final

#: Bytes of key: BLAKE2b accepts up to 64; 16 is plenty for a 32-bit tag.
SECRET_BYTES: Final = 16
_PORTS: Final = struct.Struct("!HH")
#: Local addresses whose keyed state is kept (replies may name any address of ours).
_LOCALS: Final = 64


class Cookies:
    """The cookie function of one scan, keyed by ``secret`` (fresh random bytes if None)."""

    __slots__ = ("_base", "_by_local")

    def __init__(self, secret: bytes | None = None) -> None:
        key = secrets.token_bytes(SECRET_BYTES) if secret is None else secret
        if not 1 <= len(key) <= 64:
            raise ValueError("a cookie secret is 1 to 64 bytes")
        # Keyed once; each cookie copies the keyed state (cheaper than re-keying).
        self._base = hashlib.blake2b(key=key, digest_size=4, person=b"certscan-syn")
        # The keyed state after our own address, per local address (a scan has one or two):
        # hashing is a stream, so a cookie only adds the remote address and the ports.
        self._by_local: dict[bytes, Any] = {}

    def _after(self, local: bytes) -> Any:
        found = self._by_local.get(local)
        if found is None:
            found = self._base.copy()
            found.update(bytes((len(local),)) + local)
            if len(self._by_local) >= _LOCALS:
                self._by_local.clear()
            self._by_local[local] = found
        return found

    def cookie(self, local: bytes, local_port: int, remote: bytes, remote_port: int) -> int:
        """The 32-bit sequence number for a SYN from ``local:local_port`` to
        ``remote:remote_port`` (packed addresses)."""
        h = (self._by_local.get(local) or self._after(local)).copy()
        h.update(remote + _PORTS.pack(local_port, remote_port))
        return int.from_bytes(h.digest(), "big")

    def matches(
        self, local: bytes, local_port: int, remote: bytes, remote_port: int, ack: int
    ) -> bool:
        """Whether ``ack`` acknowledges our SYN on this 4-tuple (``cookie + 1`` mod 2**32)."""
        expected = (self.cookie(local, local_port, remote, remote_port) + 1) & 0xFFFFFFFF
        return ack == expected
