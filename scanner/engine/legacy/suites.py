"""Cipher suite codes offered by the hand-built ClientHello, and their IANA names.

The hello offers every code of the blocks where TLS and SSL suites were ever assigned (the
classic ``0x00..`` block, the ECC ``0xC0..`` block, ChaCha20, TLS 1.3, the old SSLv3 FIPS
codes), except the two signalling values that change a server's behaviour: ``0x0000``
(``TLS_NULL_WITH_NULL_NULL``, never to be negotiated) and ``0x5600`` (``TLS_FALLBACK_SCSV``).
``0x00FF`` (the renegotiation SCSV) is sent, as every modern client does.

A suite chosen by the server is named by :func:`suite_name`: the IANA name (the one
``reports.ciphers`` understands, so NULL, EXPORT, anonymous, RC4, DES, 3DES, IDEA, RC2 and MD5
are graded), or ``0xC0FF``-style hex for a code no registry names. The names of whole families
are built from their parts (key exchange x bulk cipher), the way the registry assigned them.
"""

from __future__ import annotations

from typing import Final

_CLASSIC: Final[dict[int, str]] = {
    0x0001: "RSA_WITH_NULL_MD5",
    0x0002: "RSA_WITH_NULL_SHA",
    0x0003: "RSA_EXPORT_WITH_RC4_40_MD5",
    0x0004: "RSA_WITH_RC4_128_MD5",
    0x0005: "RSA_WITH_RC4_128_SHA",
    0x0006: "RSA_EXPORT_WITH_RC2_CBC_40_MD5",
    0x0007: "RSA_WITH_IDEA_CBC_SHA",
    0x0008: "RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0009: "RSA_WITH_DES_CBC_SHA",
    0x000A: "RSA_WITH_3DES_EDE_CBC_SHA",
    0x0017: "DH_anon_EXPORT_WITH_RC4_40_MD5",
    0x0018: "DH_anon_WITH_RC4_128_MD5",
    0x0019: "DH_anon_EXPORT_WITH_DES40_CBC_SHA",
    0x001A: "DH_anon_WITH_DES_CBC_SHA",
    0x001B: "DH_anon_WITH_3DES_EDE_CBC_SHA",
    0x001E: "KRB5_WITH_DES_CBC_SHA",
    0x001F: "KRB5_WITH_3DES_EDE_CBC_SHA",
    0x0020: "KRB5_WITH_RC4_128_SHA",
    0x0021: "KRB5_WITH_IDEA_CBC_SHA",
    0x0022: "KRB5_WITH_DES_CBC_MD5",
    0x0023: "KRB5_WITH_3DES_EDE_CBC_MD5",
    0x0024: "KRB5_WITH_RC4_128_MD5",
    0x0025: "KRB5_WITH_IDEA_CBC_MD5",
    0x0026: "KRB5_EXPORT_WITH_DES_CBC_40_SHA",
    0x0027: "KRB5_EXPORT_WITH_RC2_CBC_40_SHA",
    0x0028: "KRB5_EXPORT_WITH_RC4_40_SHA",
    0x0029: "KRB5_EXPORT_WITH_DES_CBC_40_MD5",
    0x002A: "KRB5_EXPORT_WITH_RC2_CBC_40_MD5",
    0x002B: "KRB5_EXPORT_WITH_RC4_40_MD5",
    0x002C: "PSK_WITH_NULL_SHA",
    0x002D: "DHE_PSK_WITH_NULL_SHA",
    0x002E: "RSA_PSK_WITH_NULL_SHA",
    0x002F: "RSA_WITH_AES_128_CBC_SHA",
    0x0035: "RSA_WITH_AES_256_CBC_SHA",
    0x003B: "RSA_WITH_NULL_SHA256",
    0x003C: "RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "RSA_WITH_AES_256_CBC_SHA256",
    0x003E: "DH_DSS_WITH_AES_128_CBC_SHA256",
    0x003F: "DH_RSA_WITH_AES_128_CBC_SHA256",
    0x0040: "DHE_DSS_WITH_AES_128_CBC_SHA256",
    # Never registered, but shipped by OpenSSL 0.9.x and old Windows (the EXPORT1024 draft).
    0x0060: "RSA_EXPORT1024_WITH_RC4_56_MD5",
    0x0061: "RSA_EXPORT1024_WITH_RC2_CBC_56_MD5",
    0x0062: "RSA_EXPORT1024_WITH_DES_CBC_SHA",
    0x0063: "DHE_DSS_EXPORT1024_WITH_DES_CBC_SHA",
    0x0064: "RSA_EXPORT1024_WITH_RC4_56_SHA",
    0x0065: "DHE_DSS_EXPORT1024_WITH_RC4_56_SHA",
    0x0066: "DHE_DSS_WITH_RC4_128_SHA",
    0x0067: "DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x0068: "DH_DSS_WITH_AES_256_CBC_SHA256",
    0x0069: "DH_RSA_WITH_AES_256_CBC_SHA256",
    0x006A: "DHE_DSS_WITH_AES_256_CBC_SHA256",
    0x006B: "DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x006C: "DH_anon_WITH_AES_128_CBC_SHA256",
    0x006D: "DH_anon_WITH_AES_256_CBC_SHA256",
    0x008A: "PSK_WITH_RC4_128_SHA",
    0x008B: "PSK_WITH_3DES_EDE_CBC_SHA",
    0x008C: "PSK_WITH_AES_128_CBC_SHA",
    0x008D: "PSK_WITH_AES_256_CBC_SHA",
    0x008E: "DHE_PSK_WITH_RC4_128_SHA",
    0x008F: "DHE_PSK_WITH_3DES_EDE_CBC_SHA",
    0x0090: "DHE_PSK_WITH_AES_128_CBC_SHA",
    0x0091: "DHE_PSK_WITH_AES_256_CBC_SHA",
    0x0092: "RSA_PSK_WITH_RC4_128_SHA",
    0x0093: "RSA_PSK_WITH_3DES_EDE_CBC_SHA",
    0x0094: "RSA_PSK_WITH_AES_128_CBC_SHA",
    0x0095: "RSA_PSK_WITH_AES_256_CBC_SHA",
    0x00B0: "PSK_WITH_NULL_SHA256",
    0x00B1: "PSK_WITH_NULL_SHA384",
    0x00B4: "DHE_PSK_WITH_NULL_SHA256",
    0x00B5: "DHE_PSK_WITH_NULL_SHA384",
    0x00B8: "RSA_PSK_WITH_NULL_SHA256",
    0x00B9: "RSA_PSK_WITH_NULL_SHA384",
    0x00FF: "EMPTY_RENEGOTIATION_INFO_SCSV",
    0xC03A: "ECDHE_PSK_WITH_NULL_SHA256",
    0xC03B: "ECDHE_PSK_WITH_NULL_SHA384",
    0xCCA8: "ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAB: "PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAD: "DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
    # TLS 1.3 suites carry no key exchange in their names (a TLS 1.2 hello never gets them).
    0x1301: "AES_128_GCM_SHA256",
    0x1302: "AES_256_GCM_SHA384",
    0x1303: "CHACHA20_POLY1305_SHA256",
    0x1304: "AES_128_CCM_SHA256",
    0x1305: "AES_128_CCM_8_SHA256",
}

# Families assigned as consecutive codes, key exchange major: (first code, key exchanges in
# order, bulk ciphers in order), so the codes run kx1+cipher1, kx1+cipher2, ..., kx2+cipher1.
_DH_FOUR: Final = ("DH_DSS", "DH_RSA", "DHE_DSS", "DHE_RSA")
_DH_SIX: Final = ("RSA", *_DH_FOUR, "DH_anon")
_ECC_FOUR: Final = ("ECDHE_ECDSA", "ECDH_ECDSA", "ECDHE_RSA", "ECDH_RSA")
_GCM: Final = ("WITH_AES_128_GCM_SHA256", "WITH_AES_256_GCM_SHA384")
_FAMILIES: Final[tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...]] = (
    (0x000B, _DH_FOUR, ("EXPORT_WITH_DES40_CBC_SHA", "WITH_DES_CBC_SHA", "WITH_3DES_EDE_CBC_SHA")),
    (0x0030, (*_DH_FOUR, "DH_anon"), ("WITH_AES_128_CBC_SHA",)),
    (0x0036, (*_DH_FOUR, "DH_anon"), ("WITH_AES_256_CBC_SHA",)),
    (0x0041, _DH_SIX, ("WITH_CAMELLIA_128_CBC_SHA",)),
    (0x0084, _DH_SIX, ("WITH_CAMELLIA_256_CBC_SHA",)),
    (0x0096, _DH_SIX, ("WITH_SEED_CBC_SHA",)),
    (0x009C, ("RSA", "DHE_RSA", "DH_RSA", "DHE_DSS", "DH_DSS", "DH_anon"), _GCM),
    (0x00BA, _DH_SIX, ("WITH_CAMELLIA_128_CBC_SHA256",)),
    (0x00C0, _DH_SIX, ("WITH_CAMELLIA_256_CBC_SHA256",)),
    (
        0xC001,
        ("ECDH_ECDSA", "ECDHE_ECDSA", "ECDH_RSA", "ECDHE_RSA", "ECDH_anon"),
        (
            "WITH_NULL_SHA",
            "WITH_RC4_128_SHA",
            "WITH_3DES_EDE_CBC_SHA",
            "WITH_AES_128_CBC_SHA",
            "WITH_AES_256_CBC_SHA",
        ),
    ),
    (0xC023, _ECC_FOUR, ("WITH_AES_128_CBC_SHA256", "WITH_AES_256_CBC_SHA384")),
    (0xC02B, _ECC_FOUR, _GCM),
    (
        0xC033,
        ("ECDHE_PSK",),
        (
            "WITH_RC4_128_SHA",
            "WITH_3DES_EDE_CBC_SHA",
            "WITH_AES_128_CBC_SHA",
            "WITH_AES_256_CBC_SHA",
            "WITH_AES_128_CBC_SHA256",
            "WITH_AES_256_CBC_SHA384",
            "WITH_NULL_SHA",
        ),
    ),
)
# The SRP suites alone were assigned cipher major: 3DES for each key exchange, then AES-128...
_SRP: Final = (
    0xC01A,
    ("SRP_SHA", "SRP_SHA_RSA", "SRP_SHA_DSS"),
    ("3DES_EDE", "AES_128", "AES_256"),
)


def _names() -> dict[int, str]:
    names = dict(_CLASSIC)
    for first, kxs, ciphers in _FAMILIES:
        for i, (kx, cipher) in enumerate((k, c) for k in kxs for c in ciphers):
            names.setdefault(first + i, f"{kx}_{cipher}")
    first, kxs, ciphers = _SRP
    for i, (cipher, kx) in enumerate((c, k) for c in ciphers for k in kxs):
        names.setdefault(first + i, f"{kx}_WITH_{cipher}_CBC_SHA")
    return {code: f"TLS_{name}" for code, name in names.items()}


#: Every named code, with its IANA name (``TLS_`` prefix included).
NAMES: Final[dict[int, str]] = _names()

#: The codes the hand-built hello offers, in this order (classic, ECC, ChaCha20, TLS 1.3,
#: the SSLv3-era FIPS codes): 0x0001-0x00FF, 0xC001-0xC0FF, 0xCCA8-0xCCAE, 0x1301-0x1305,
#: 0xFEFE, 0xFEFF, 0xFFE0, 0xFFE1.
OFFERED: Final[tuple[int, ...]] = (
    *range(0x0001, 0x0100),
    *range(0xC001, 0xC100),
    *range(0xCCA8, 0xCCAF),
    *range(0x1301, 0x1306),
    0xFEFE,
    0xFEFF,
    0xFFE0,
    0xFFE1,
)

_FIPS: Final[dict[int, str]] = {
    0xFEFE: "SSL_RSA_FIPS_WITH_DES_CBC_SHA",
    0xFEFF: "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA",
    0xFFE0: "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA",
    0xFFE1: "SSL_RSA_FIPS_WITH_DES_CBC_SHA",
}


def suite_name(code: int) -> str:
    """The IANA name of cipher suite ``code``, or ``0xABCD`` for a code no registry names."""
    return NAMES.get(code) or _FIPS.get(code) or f"0x{code:04X}"
