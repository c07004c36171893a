"""``certscan import PATH...``: certificate files, bundles and keystores into the inventory.

Options become :class:`scanner.sweep.files.ImportOptions`; the password of PKCS#12 files and
keystores is read from the environment variable named by ``--password-env`` (never from the
command line, where ``ps`` would show it). Prints one line per file endpoint and per refused
path; exit 0, or 1 with ``--fail-on`` matched, 2 for usage errors, 3 for operational ones.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from scanner.cli.options import CaBundleOption, ConfigOption, DbOption, FailOnOption
from scanner.errors import UsageError
from scanner.inventory.location import db_url
from scanner.text import safe


def import_(
    paths: Annotated[list[str], typer.Argument(help="Files, directories (recursive) or globs.")],
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root", help="Only read files inside these directories (default: the paths)."
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            metavar="VAR",
            help="Environment variable holding the PKCS#12/keystore password.",
        ),
    ] = None,
    max_files: Annotated[int, typer.Option("--max-files", min=1, max=1_000_000)] = 10_000,
    max_size: Annotated[int, typer.Option("--max-size", metavar="BYTES", min=1, max=1 << 30)] = 4
    * 1024
    * 1024,
    fail_on: FailOnOption = None,
    config: ConfigOption = None,
    ca_bundle: CaBundleOption = None,
    db: DbOption = None,
) -> int:
    """Import certificate files (PEM, DER, PKCS#7, PKCS#12, JKS/JCEKS) as endpoints file:/path."""
    from rich.console import Console

    from reports import assess

    # Imported here: the readers (PKCS#7 pulls in the email package) serve this command only.
    from scanner.sweep.files import ImportOptions, import_files

    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise UsageError(f"--password-env: the variable {safe(password_env, 60)} is not set")
    threshold = None if fail_on is None else assess.parse_severity(fail_on, option="--fail-on")
    criteria = assess.load_criteria(config, ca_bundle or (), env=os.environ)
    options = ImportOptions(
        paths=tuple(paths),
        roots=tuple(root or ()),
        max_files=max_files,
        max_bytes=max_size,
        password=password,
        criteria=criteria,
    )
    from scanner.inventory.store import Inventory

    with Inventory(db_url(db)) as inventory:
        done = import_files(inventory, options)
        views = assess.read_views(inventory, criteria=criteria, now=_now(), scan_id=done.scan_id)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False, soft_wrap=True)
    for address, (status, detail) in sorted(done.endpoints.items()):
        out.print(
            f"{safe(address, 300)}: {status}" + (f" ({safe(detail, 200)})" if detail else ""),
            markup=False,
        )
    for refused in done.refused:
        err.print(
            f"refused {safe(str(refused.path), 300)}: {safe(refused.reason, 200)}", markup=False
        )
    err.print(
        f"scan {done.scan_id}: {len(done.endpoints)} file endpoints, {len(done.refused)} refused, "
        f"{done.findings} findings",
        markup=False,
    )
    return 1 if assess.failing(views, threshold) else 0


def _now() -> datetime:
    return datetime.now(UTC)
