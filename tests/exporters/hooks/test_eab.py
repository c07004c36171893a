"""External Account Binding against Pebble with ``externalAccountBindingRequired``: refused
without it, issued with it, and the HMAC key is never in a result, a log line or the record."""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from cryptography import x509

from exporters.hooks.acme import AcmeAction
from exporters.hooks.runner import execute, plan
from scanner.inventory import hooks as store_hooks
from scanner.inventory.store import Inventory
from tests.exporters.hooks.pebble import free_port, run_pebble
from tests.exporters.hooks.test_acme import NAME, _context, _options
from tests.exporters.hooks.test_isolation import _endpoints, _finding, _hook

KID = "certscan-kid-1"
ENV = "CERTSCAN_TEST_EAB_KEY"


async def test_eab_required_refused_without_and_issued_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    monkeypatch.setenv(ENV, hmac_key)
    http_port = free_port()
    with trio.fail_after(40):
        async with run_pebble(tmp_path, http_port=http_port, eab_keys={KID: hmac_key}) as ca:
            plain = _options(ca, tmp_path / "a", http_port)
            refused = await AcmeAction(options=plain).run(_context((NAME,)))

            monkeypatch.setenv(ENV, "")
            bound = _options(ca, tmp_path / "b", http_port, eab_kid=KID, eab_hmac_key_env=ENV)
            unset = await AcmeAction(options=bound).run(_context((NAME,)))
            monkeypatch.setenv(ENV, hmac_key)

            with Inventory(f"sqlite:///{tmp_path / 'inv.db'}") as inv:
                hook = _hook("renew", AcmeAction(options=bound))
                now = datetime.now(UTC)
                todo = plan([hook], [_finding()], _endpoints((NAME,)), {}, now)
                (done,) = await execute(inv, todo, concurrency=1, now=now)
                rows = store_hooks.history(inv.engine)
    assert not refused.ok
    assert "requires External Account Binding" in refused.output_tail
    assert not unset.ok
    assert f"environment variable {ENV} (eab_hmac_key_env) is unset" in unset.output_tail
    assert done.result is not None
    assert done.result.ok, done.result.output_tail
    cert = x509.load_pem_x509_certificate((tmp_path / "b" / "out" / "cert.pem").read_bytes())
    assert "Pebble" in cert.issuer.rfc4514_string()
    for text in (
        refused.output_tail,
        unset.output_tail,
        done.result.output_tail,
        caplog.text,
        *(r.output_tail or "" for r in rows),
        repr(bound),
        (tmp_path / "inv.db").read_bytes().decode("latin-1"),
    ):
        assert hmac_key not in text
