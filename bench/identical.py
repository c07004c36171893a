"""Results identical: what certscan reported and stored equals the lab's manifest, exactly.

Theory of operation
-------------------
``tools.count_found`` counts leaves and chains that match; ``check`` goes further for a certscan
run on a lab scenario and says whether the results are *the same* as the manifest, so a speed-up
that loses, adds or changes anything shows: the ``--json`` lines reported a certificate for
every live endpoint of the scenario and for nothing else, each with the right leaf followed by
the right intermediate, no line was unreadable, and the SQLite inventory holds, for each of those
endpoints, an observation whose stored chain (``observation_certificate``, by position) is that
leaf and intermediate, and its ``certificate`` table holds exactly the lab's distinct leaves and
intermediates. The verdict is "identical" or "differs: ..." with the first differences counted.
The database is opened read-only and every value in it is treated as untrusted text.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab_manifest import Endpoint

IDENTICAL = "identical"


def expected_endpoints(
    lab: Mapping[str, Endpoint], networks: Sequence[str], ports: str
) -> dict[tuple[str, int], Endpoint]:
    """The lab endpoints a sweep of ``networks`` on ``ports`` must find, by (address, port)."""
    nets = [ipaddress.ip_network(n) for n in networks]
    wanted = {int(p) for p in ports.split(",")}
    return {
        (e.address, e.port): e
        for e in lab.values()
        if e.port in wanted and any(ipaddress.ip_address(e.address) in n for n in nets)
    }


def stored_chains(db: Path) -> tuple[dict[tuple[str, int], list[str]], set[str]] | str:
    """Each endpoint's stored chain (SHA-256 by position) and the certificate table's SHA-256s,
    or why they could not be read."""
    if not db.is_file():
        return "no inventory file"
    chains: dict[tuple[str, int], dict[int, str]] = {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT e.address, e.port, oc.position, oc.sha256 FROM observation o "
                "JOIN endpoint e ON e.id = o.endpoint_id "
                "JOIN observation_certificate oc ON oc.observation_id = o.id"
            )
            for address, port, position, sha256 in rows:
                chains.setdefault((str(address), int(port)), {})[int(position)] = _hex(sha256)
            certificates = {_hex(r[0]) for r in conn.execute("SELECT sha256 FROM certificate")}
    except (sqlite3.Error, ValueError, TypeError) as exc:
        return f"inventory unreadable ({str(exc)[:80]})"
    ordered = {k: [v[p] for p in sorted(v)] for k, v in chains.items()}
    return ordered, certificates


def _hex(value: object) -> str:
    return str(value).replace(":", "").strip().lower()


def check(
    *,
    expected: Mapping[tuple[str, int], Endpoint],
    with_cert: int,
    matched: int,
    full_chain: int | None,
    garbled: int,
    db: Path,
) -> str:
    """ "identical", or "differs: ..." listing what does not match the manifest."""
    live = len(expected)
    problems = []
    if matched != live:
        problems.append(f"{live - matched} leaves missing or wrong in --json")
    if full_chain != live:
        problems.append(f"{live - (full_chain or 0)} chains missing or wrong in --json")
    if with_cert != matched:
        problems.append(f"{with_cert - matched} unexpected certificates in --json")
    if garbled:
        problems.append(f"{garbled} unreadable --json lines")
    stored = stored_chains(db)
    if isinstance(stored, str):
        problems.append(stored)
    else:
        chains, certificates = stored
        wrong = sum(
            1
            for key, e in expected.items()
            if chains.get(key) != [e.leaf_sha256, e.intermediate_sha256]
        )
        extra = sum(1 for key, chain in chains.items() if chain and key not in expected)
        want = {e.leaf_sha256 for e in expected.values()}
        want |= {e.intermediate_sha256 for e in expected.values()}
        if wrong:
            problems.append(f"{wrong} stored chains missing or wrong")
        if extra:
            problems.append(f"{extra} unexpected stored chains")
        if certificates != want:
            problems.append(
                f"certificate table: {len(want - certificates)} missing, "
                f"{len(certificates - want)} extra"
            )
    return IDENTICAL if not problems else "differs: " + "; ".join(problems)
