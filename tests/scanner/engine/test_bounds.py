"""The engine's bounds against real loopback servers: how a wait for a handshake slot is
timed, chains over OpenSSL's own message limit, and ``--all-certs`` with a leaf whose key
cryptography cannot load."""

from __future__ import annotations

import subprocess
from itertools import count
from pathlib import Path

import pytest
import trio
from OpenSSL import SSL

from scanner.engine import rehandshake, tls
from scanner.engine.crew import _attempt, probe
from scanner.models import EngineLimits, FailureKind, Handshake, ScanFailure
from tests import peers
from tests.conftest import require_tool

_addresses = count(1)


def fresh_address() -> str:
    n = next(_addresses)
    return f"127.93.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


async def test_a_slot_wait_is_not_cut_by_the_connect_timeout(pki: peers.Pki) -> None:
    # Every slot is taken (here by the test) for longer than the connect timeout, and the
    # server would answer at once: the target must handshake when the slot comes free.
    limits = EngineLimits(connect_timeout=0.2, handshake_timeout=0.5, target_deadline=3.0)
    slots = trio.Semaphore(1)
    await slots.acquire()
    ctx = peers.server_context(pki.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        outcome: list[object] = []

        async def run() -> None:
            outcome.append(await probe(peer.target("localhost"), limits, slots=slots))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.sleep(0.8)  # past the connect and the handshake timeouts both
            slots.release()
    (found,) = outcome
    assert isinstance(found, Handshake), found
    assert found.chain == (pki.leaf.der, pki.intermediate.der)


async def test_a_slot_wait_that_exhausts_the_deadline_says_so(pki: peers.Pki) -> None:
    limits = EngineLimits(
        connect_timeout=0.2, handshake_timeout=0.2, target_deadline=0.6, handshakes=1
    )
    slots = trio.Semaphore(1)
    await slots.acquire()  # never given back during the probe
    ctx = peers.server_context(pki.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        start = trio.current_time()
        found = await probe(peer.target("localhost"), limits, slots=slots)
        elapsed = trio.current_time() - start
    assert isinstance(found, ScanFailure)
    assert found.kind is FailureKind.TIMEOUT
    assert found.connected is True
    assert found.detail == (
        "no free handshake slot within the 0.6s per-target deadline (all 1 handshake slots busy); "
        "the server was never asked"
    )
    assert 0.55 < elapsed < 1.5  # the deadline, not the 0.2 s connect timeout


async def test_a_chain_over_openssls_message_limit_is_chain_too_large() -> None:
    big = peers.make_pki(san_count=3800)  # a ~110 kB leaf: over OpenSSL's 100 KiB bound
    assert len(big.leaf.der) > 100 * 1024
    ctx = peers.server_context(big.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        found = await probe(peer.target("localhost"), EngineLimits(handshake_timeout=3.0))
    assert isinstance(found, ScanFailure), found
    assert found.kind is FailureKind.CHAIN_TOO_LARGE
    assert "excessive message size" in found.detail


def _openssl_leaf(tmp_path: Path, curve: str) -> bytes:
    """A self-signed certificate on ``curve``, made by the system OpenSSL (cryptography cannot
    make keys on the curves it cannot load)."""
    openssl = require_tool("openssl")
    key, cert = tmp_path / f"{curve}.key", tmp_path / f"{curve}.der"
    subprocess.run(
        [openssl, "ecparam", "-name", curve, "-genkey", "-noout", "-out", str(key)], check=True
    )
    subprocess.run(
        [openssl, "req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={curve}",
         "-days", "30", "-outform", "DER", "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_bytes()


@pytest.mark.parametrize("curve", ["secp160r1", "SM2"])
async def test_all_certs_keeps_the_first_chain_when_the_leaf_key_cannot_be_loaded(
    tmp_path: Path, pki: peers.Pki, curve: str
) -> None:
    odd = _openssl_leaf(tmp_path, curve)
    assert rehandshake.leaf_key_type((odd,)) is None  # unknown: both other types are tried
    limits = EngineLimits(handshake_timeout=2.0, target_deadline=4.0)
    ctx = peers.server_context(pki.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        target = peer.target("localhost")

        async def connect(context: SSL.Context) -> tls.Negotiated | tls.Fault:
            return (await _attempt(target, limits, context, None)).result

        alt = await rehandshake.alt_chains((odd,), "TLSv1", connect)
    assert alt == ((pki.leaf.der, pki.intermediate.der),)  # the first chain stays chain[0]
