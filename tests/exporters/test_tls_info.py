"""``certscan_endpoint_tls_info``: version, cipher and group per endpoint, bounded, from a real
inventory (SQLite) through the collector, and checked by promtool."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from exporters.prometheus import tls_labels
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.exporters.test_prometheus import (
    endpoint,
    failure,
    handshake,
    promtool_accepts,
    record_scan,
    scrape,
)


@pytest.fixture
def inventory(tmp_path: Path) -> Iterator[Inventory]:
    inv = Inventory(db_url(str(tmp_path / "tls.db")))
    try:
        yield inv
    finally:
        inv.close()


def test_tls_info_names_version_cipher_and_group(inventory: Inventory) -> None:
    root = certgen.make_ca()
    leaf = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"])
    modern, certs = handshake("127.0.9.1", leaf)
    modern = dataclasses.replace(modern, group="X25519MLKEM768")
    legacy, legacy_certs = handshake("127.0.9.2", leaf)
    legacy = dataclasses.replace(
        legacy, tls_version="SSLv3", cipher="TLS_RSA_WITH_RC4_128_SHA", legacy_capture=True
    )
    hostile, hostile_certs = handshake("127.0.9.3", leaf)
    hostile = dataclasses.replace(hostile, tls_version="TLSv9", cipher='x"\n{}', group="a" * 99)
    record_scan(
        inventory,
        [(modern, certs), (legacy, legacy_certs), (hostile, hostile_certs), failure("127.0.9.4")],
    )
    registry = scrape(inventory)
    name = "certscan_endpoint_tls_info"

    def labels(address: str, version: str, cipher: str, group: str) -> dict[str, str]:
        return endpoint(address) | {"version": version, "cipher": cipher, "group": group}

    assert (
        registry.get_sample_value(
            name, labels("127.0.9.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768")
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            name, labels("127.0.9.2", "SSLv3", "TLS_RSA_WITH_RC4_128_SHA", "")
        )
        == 1
    )
    assert registry.get_sample_value(name, labels("127.0.9.3", "other", "other", "other")) == 1
    families = {f.name: f for f in registry.collect()}
    assert {s.labels["address"] for s in families[name].samples} == {
        "127.0.9.1", "127.0.9.2", "127.0.9.3",
    }  # fmt: skip  # the endpoint that failed has no TLS facts
    promtool_accepts(generate_latest(registry))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "secp256r1"),
         {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "group": "secp256r1"}),
        (("TLSv1.2", "AES128-SHA", None),
         {"version": "TLSv1.2", "cipher": "AES128-SHA", "group": ""}),
        (("SSLv3", None, None), {"version": "SSLv3", "cipher": "other", "group": ""}),
        (("TLSv1.4", "a b", "x" * 65), {"version": "other", "cipher": "other", "group": "other"}),
    ],
)  # fmt: skip
def test_tls_labels_are_bounded(
    given: tuple[str, str | None, str | None], expected: dict[str, str]
) -> None:
    assert tls_labels(*given) == expected
