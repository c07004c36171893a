"""The checks of the ``acme`` hook (pure): which names to order, the CSR built only from names
that pass the host-name check, and the issued certificate checked before it is installed (our
key, exactly the ordered names)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from acme import crypto_util
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporters.hooks.acme_options import AcmeOptions
from exporters.hooks.base import one_line
from exporters.hooks.names import check, printable, select
from scanner.errors import CertscanError

__all__ = ["AcmeError", "check_issued", "issued_names", "make_csr", "wanted_names"]


class AcmeError(CertscanError):
    """An ACME order failed: the CA refused, a challenge was invalid, or a step timed out."""


def make_csr(key_pem: bytes, names: Sequence[str], *, wildcards: bool = False) -> bytes:
    """A CSR for ``names`` (DNS names, or IP addresses for an IP-only certificate); refuses
    any name that does not pass :func:`exporters.hooks.names.check`."""
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    dns: list[str] = []
    for name in names:
        try:
            ips.append(ipaddress.ip_address(name))
            continue
        except ValueError:
            pass
        why = check(name, wildcard=wildcards)
        if why is not None:
            raise AcmeError(f"refusing to order {printable(name, 80)}: {why}")
        dns.append(name)
    if not names:
        raise AcmeError("no names to order a certificate for")
    if ips and dns:
        raise AcmeError("IP addresses and DNS names cannot share one certificate here")
    return crypto_util.make_csr(key_pem, dns or None, ipaddrs=ips or None)


def issued_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate's SAN extension lists (lowercase)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return {n.lower() for n in sans.get_values_for_type(x509.DNSName)} | ips


def check_issued(fullchain: bytes, key_pem: bytes, wanted: Sequence[str]) -> list[x509.Certificate]:
    """The chain, after checking that the leaf holds our key and exactly the ordered names."""
    try:
        certs = x509.load_pem_x509_certificates(fullchain)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise AcmeError(f"the issued certificate cannot be read: {one_line(str(exc))}") from None
    leaf = certs[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise AcmeError("the issued certificate does not hold the key we generated: not installed")
    got, asked = issued_names(leaf), {n.lower() for n in wanted}
    if got != asked:
        extra = ", ".join(sorted(got - asked)) or "-"
        missing = ", ".join(sorted(asked - got)) or "-"
        raise AcmeError(
            f"the issued certificate's names differ from the order (extra: {printable(extra)}; "
            f"missing: {printable(missing)}): not installed"
        )
    return certs


def wanted_names(options: AcmeOptions, sans: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """The names to order for a certificate listing ``sans``, and a line naming the SANs left
    out (empty when none was): the configured ``names``, or the SANs matching ``match_names``
    that pass the host-name check (pure)."""
    lowered = [s.lower() if s.isascii() else s for s in sans]
    if options.names:
        extra = select(n for n in lowered if n not in options.names)
        left = [name for name, _ in extra.refused] + list(extra.kept)
        note = ""
        if left:
            shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
            note = f"not ordered, not in the hook's names: {shown}"
        return options.names, note
    chosen = select(lowered, globs=options.match_names, wildcard=options.allow_wildcards)
    return chosen.kept, chosen.refusal()
