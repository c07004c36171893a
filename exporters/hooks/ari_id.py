"""RFC 9773 certificate identifiers (pure): what ``renewalInfo/ID`` and ``replaces`` carry.

Section 4.1: the ID is the base64url encoding (no padding) of the ``keyIdentifier`` of the
certificate's Authority Key Identifier extension, a ``.``, and the base64url encoding (no
padding) of the DER encoding of its serial number *without* the tag and length bytes: the
INTEGER's content octets, two's complement, shortest form (so a serial whose top bit is set
gains a leading zero byte).
"""

from __future__ import annotations

import base64

__all__ = ["cert_id", "cert_id_from_hex", "serial_content_octets"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def serial_content_octets(serial: int) -> bytes:
    """The content octets of the DER INTEGER ``serial`` (two's complement, shortest)."""
    length = max(1, (serial.bit_length() + 8) // 8)  # room for the sign bit
    return serial.to_bytes(length, "big", signed=True)


def cert_id(key_identifier: bytes, serial: int) -> str:
    """The RFC 9773 certificate ID for an AKI ``keyIdentifier`` and a serial number."""
    return f"{_b64url(key_identifier)}.{_b64url(serial_content_octets(serial))}"


def cert_id_from_hex(authority_key_id: str | None, serial: str | None) -> str | None:
    """:func:`cert_id` from the inventory's lowercase hex fields; None when either is missing
    or not hex."""
    if not authority_key_id or not serial:
        return None
    try:
        return cert_id(bytes.fromhex(authority_key_id), int(serial, 16))
    except ValueError:
        return None
