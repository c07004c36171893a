"""The key exchange group and signature scheme in a legacy capture's ServerKeyExchange (pure).

In TLS 1.2 and older the ServerKeyExchange travels in clear. For an ECDHE suite it opens with
the named curve (``curve_type`` 3, then the 2-byte group code), then the public point
``<1..255>``; for a DHE suite with ``dh_p``, ``dh_g`` and ``dh_Ys``, each ``<1..2^16-1>``.
TLS 1.2 then names the signature scheme (2 bytes) before the signature; TLS 1.0/1.1 have no
such field (RSA signs with MD5+SHA-1, ECDSA with SHA-1), so it is ``None`` there. Every length
is checked against the body; a body that does not parse yields ``None`` for what it hides,
never an exception.
"""

from __future__ import annotations

from typing import Final

#: Named groups by code, as the TLS registry names them (OpenSSL's names for 23-30).
GROUP_NAMES: Final[dict[int, str]] = {
    **dict(
        enumerate(
            (
                "sect163k1", "sect163r1", "sect163r2", "sect193r1", "sect193r2", "sect233k1",
                "sect233r1", "sect239k1", "sect283k1", "sect283r1", "sect409k1", "sect409r1",
                "sect571k1", "sect571r1", "secp160k1", "secp160r1", "secp160r2", "secp192k1",
                "secp192r1", "secp224k1", "secp224r1", "secp256k1", "secp256r1", "secp384r1",
                "secp521r1", "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "x25519",
                "x448", "brainpoolP256r1tls13", "brainpoolP384r1tls13", "brainpoolP512r1tls13",
            ),
            start=1,
        )
    ),
    256: "ffdhe2048",
    257: "ffdhe3072",
    258: "ffdhe4096",
    259: "ffdhe6144",
    260: "ffdhe8192",
}  # fmt: skip

_HASHES: Final = {1: "md5", 2: "sha1", 3: "sha224", 4: "sha256", 5: "sha384", 6: "sha512"}
_SIGNATURES: Final = {1: "rsa_pkcs1", 2: "dsa", 3: "ecdsa"}
#: Signature schemes with names of their own (RFC 8446 4.2.3).
SCHEME_NAMES: Final[dict[int, str]] = {
    0x0403: "ecdsa_secp256r1_sha256",
    0x0503: "ecdsa_secp384r1_sha384",
    0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519",
    0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256",
    0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512",
}

_TLS12: Final = 0x0303


def group_name(code: int) -> str:
    return GROUP_NAMES.get(code) or f"0x{code:04x}"


def scheme_name(code: int) -> str:
    """The scheme's name as TLS 1.2 means it: a (hash, signature) pair is ``signature_hash``
    (``ecdsa_sha512``: in TLS 1.2 the pair binds no curve, unlike TLS 1.3's
    ``ecdsa_secp521r1_sha512``); the RSA-PSS and EdDSA schemes by their own names."""
    hash_name, signature = _HASHES.get(code >> 8), _SIGNATURES.get(code & 0xFF)
    if hash_name and signature:
        return f"{signature}_{hash_name}"
    return SCHEME_NAMES.get(code) or f"0x{code:04x}"


def _vector(body: bytes, at: int, width: int) -> int | None:
    """The offset after the ``width``-byte-length vector at ``at``, or None past the end."""
    if len(body) - at < width:
        return None
    end = at + width + int.from_bytes(body[at : at + width], "big")
    return end if end <= len(body) else None


def key_exchange(body: bytes, suite: str, version: int) -> tuple[str | None, str | None]:
    """(group, signature scheme) from a ServerKeyExchange ``body`` of ``suite`` (its IANA
    name) at ``version``; ``None`` for either when the body does not say."""
    group: str | None = None
    at: int | None
    if "ECDHE" in suite:
        if len(body) < 4 or body[0] != 3:  # named_curve only; explicit curves are not named
            return None, None
        group = group_name(int.from_bytes(body[1:3], "big"))
        at = _vector(body, 3, 1)
    elif "DHE" in suite:
        at = 0
        for _ in range(3):  # dh_p, dh_g, dh_Ys
            at = _vector(body, at, 2) if at is not None else None
    else:
        return None, None
    if version < _TLS12 or at is None or len(body) - at < 2:
        return group, None
    return group, scheme_name(int.from_bytes(body[at : at + 2], "big"))
