"""Which optional extra a missing module belongs to, for the one-line error of a command that
needs it (``pip install 'certscan[serve]'``). The core (sweep, inventory, findings, reports,
textfile export) needs none of them."""

from __future__ import annotations

__all__ = ["EXTRA_OF", "missing_extra_message"]

#: Top-level module -> the extra that installs it.
EXTRA_OF: dict[str, str] = {
    "starlette": "serve",
    "hypercorn": "serve",
    "httpx": "serve",
    "celery": "zones",
    "kombu": "zones",
    "redis": "zones",
    "acme": "acme",
    "josepy": "acme",
    "psycopg": "postgres",
    "psycopg_binary": "postgres",
}


def missing_extra_message(exc: BaseException) -> str | None:
    """The one line for a ModuleNotFoundError of an extra's module, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    extra = EXTRA_OF.get(exc.name.split(".")[0])
    if extra is None:
        return None
    return (
        f"this needs the {extra} extra ({exc.name.split('.')[0]} is not installed): "
        f"pip install 'certscan[{extra}]'"
    )
