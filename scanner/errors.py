"""User-facing errors. Each becomes one line on stderr and a fixed exit code at the CLI edge.

Expected network outcomes are *values* (``scanner.models.FailureKind``), not exceptions; a bug
is neither and propagates.
"""

from __future__ import annotations


class CertscanError(Exception):
    """Base of every error certscan reports to the user as one line. Exit code 2 (usage)."""

    exit_code = 2


class UsageError(CertscanError):
    """The command line, a targets file or a config file is wrong."""


class TargetError(UsageError):
    """A target, port list, exclusion or blocklist entry cannot be understood or is refused."""


class OperationalError(CertscanError):
    """certscan could not do its job: the database is unreachable or unwritable, and so on."""

    exit_code = 3


class StoreError(OperationalError):
    """The inventory could not be opened, migrated, read or written."""
