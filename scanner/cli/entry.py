"""The ``certscan`` console script and ``python -m scanner``.

``certscan --version`` is answered here, before typer or anything of certscan's is imported;
every other command line goes to :func:`scanner.cli.app.main`, whose command modules import
what a command needs only when it runs (``--help`` imports none of it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and, as a script, exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from scanner import __version__

        sys.stdout.write(f"certscan {__version__}\n")
        sys.stdout.flush()
        return 0
    from scanner.cli.app import main as run

    return run(argv)
