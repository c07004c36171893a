"""ACME profiles and IP identifiers (RFC 8738) against Pebble on loopback."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import trio
from cryptography import x509

from exporters.hooks.acme import AcmeError, renew
from exporters.hooks.acme_options import parse_acme_options
from scanner.errors import UsageError
from tests.exporters.hooks.pebble import free_port, run_pebble
from tests.exporters.hooks.test_acme import BASE, NAME, _options


async def test_a_profile_the_directory_does_not_list_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    http_port = free_port()
    with trio.fail_after(20):
        async with run_pebble(tmp_path, http_port=http_port) as ca:
            options = _options(ca, tmp_path, http_port, profile="shortlived")
            with pytest.raises(AcmeError) as caught:
                await renew(options, names=[NAME])
    message = str(caught.value)
    assert message == "the CA's directory lists no profile shortlived (it lists: none)"
    assert not (tmp_path / "out").exists()


async def test_an_ip_only_certificate_through_http01(tmp_path: Path) -> None:
    http_port = free_port()
    with trio.fail_after(20):
        async with run_pebble(tmp_path, http_port=http_port) as ca:
            options = _options(ca, tmp_path, http_port, names=("127.0.0.1",))
            result = await renew(options, names=["127.0.0.1"])
    cert = x509.load_pem_x509_certificate((tmp_path / "out" / "cert.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == []
    assert result.names == ("127.0.0.1",)


def test_ip_and_dns_names_do_not_mix_and_dns01_cannot_prove_an_ip() -> None:
    with pytest.raises(UsageError, match="cannot share a certificate"):
        parse_acme_options({**BASE, "names": ["127.0.0.1", NAME]}, "hooks.r")
    table = {k: v for k, v in BASE.items() if k != "listen"}
    table |= {"names": ["::1"], "challenge": "dns-01", "challenge_command": ["x"]}
    with pytest.raises(UsageError, match="validated by http-01 only"):
        parse_acme_options(table, "hooks.r")
