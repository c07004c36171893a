"""Where an inventory is: the default SQLite file and the URL a ``--db`` value names. No
SQLAlchemy here, so that commands can name their database before (or without) opening it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

__all__ = ["URL_SCHEME", "db_url", "default_db_path"]

#: ``scheme://``: a value of ``--db`` that is a URL rather than a file path.
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/certscan/inventory.db`` (XDG default: ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "certscan" / "inventory.db"


def db_url(value: str | None) -> str:
    """A SQLAlchemy URL for ``--db``/``CERTSCAN_DB``: None or '' -> the default SQLite file; a
    URL (``scheme://...``) passes through; anything else is a file path for SQLite. The path is
    quoted exactly as SQLAlchemy renders a URL's database (``sqlalchemy.URL.render_as_string``)."""
    if not value:
        path = default_db_path()
    elif URL_SCHEME.match(value):
        return value
    else:
        path = Path(value).expanduser().absolute()
    return "sqlite:///" + quote(str(path), safe=" +/")
