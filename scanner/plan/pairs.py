"""Per-target server names: ``(address, port, sni)`` rows of a CSV targets file.

Theory of operation
-------------------
The target syntax ``ENTRY=NAME`` (``scanner.plan.targets``) pairs one address, CIDR, range or
hostname with one server name to send as SNI, the way zgrab2's ``IP,DOMAIN`` input and curl's
``--resolve`` do. A spreadsheet or an inventory export rather holds the same pairs as a CSV
file, one row each::

    address,port,sni            # the header is optional
    10.0.0.5,443,www.example.org
    2001:db8::7,8443,api.example.org
    10.0.0.6,,intranet.example  # empty port: the -p ports
    10.0.0.7,636                # no name: the --sni name, or none

:func:`parse_csv` turns such a text into target entries in the ``ENTRY=NAME`` syntax (an IPv6
address bracketed when it has a port), each an :class:`~scanner.plan.targets.Entry` that
remembers ``file:line``, and checks each one as the plan will, so a bad row is one line naming
the file and the line before any work is done. Comments start with ``#`` (no address, port or
hostname holds one); blank lines are skipped; fields may be quoted as spreadsheets write them
and are stripped of blanks. The file is bounded: at most :data:`MAX_BYTES` bytes and
:data:`MAX_ROWS` rows. A hostname in the address column is resolved as a target is; its own
name is the SNI unless the row gives another.

Everything here is pure except :func:`read_csv`, which reads a bounded file and hands its text
to :func:`parse_csv`.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Final

from scanner.errors import TargetError
from scanner.plan.targets import Entry, check_entry

#: Bytes a CSV targets file may hold.
MAX_BYTES: Final = 16 * 1024 * 1024
#: Rows (targets) a CSV targets file may hold.
MAX_ROWS: Final = 250_000
#: The column names of the optional header row.
HEADER: Final = ("address", "port", "sni")


def pair_entry(address: str, port: str = "", sni: str = "") -> str:
    """The target entry for one row: ``10.0.0.5:443=www.example.org``, ``[::1]:8443=name``.

    No checks: :func:`scanner.plan.targets.check_entry` judges the result."""
    host = f"[{address}]" if port and ":" in address and not address.startswith("[") else address
    text = f"{host}:{port}" if port else host
    return f"{text}={sni}" if sni else text


def _fields(line: str, origin: str) -> list[str] | None:
    """The stripped fields of one line, or None for a blank or comment line."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    try:
        rows = list(csv.reader([text], strict=True, skipinitialspace=True))
    except csv.Error as exc:
        raise TargetError(f"{origin}: not a CSV row: {exc}") from None
    fields = [field.strip() for field in rows[0]] if rows else []
    if not 1 <= len(fields) <= len(HEADER):
        raise TargetError(
            f"{origin}: expected address,port,sni (1 to 3 fields), got {len(fields)} fields"
        )
    return fields


def parse_csv(text: str, *, source: str) -> list[str]:
    """The target entries of a CSV targets file's ``text`` (module docstring), each checked;
    TargetError ``source:line: reason`` for the first bad row."""
    out: list[str] = []
    first = True
    for lineno, line in enumerate(text.split("\n"), 1):
        origin = f"{source}:{lineno}"
        fields = _fields(line.rstrip("\r"), origin)
        if fields is None:
            continue
        if first and tuple(f.lower() for f in fields) == HEADER[: len(fields)]:
            first = False
            continue
        first = False
        address, port, sni = (*fields, "", "")[:3]
        if not address:
            raise TargetError(f"{origin}: the address field is empty")
        if "=" in address or "=" in port:
            raise TargetError(f"{origin}: '=' belongs in no address or port; the name is column 3")
        if len(out) >= MAX_ROWS:
            raise TargetError(f"{source}: more than {MAX_ROWS:,} rows; split the file")
        entry = Entry(pair_entry(address, port, sni), origin)
        check_entry(entry)
        out.append(entry)
    return out


def read_csv(path: Path) -> list[str]:
    """The checked entries of the CSV targets file at ``path`` (``-``: standard input);
    TargetError for a file that cannot be read, is too large, or holds a bad row."""
    try:
        if str(path) == "-":
            text = sys.stdin.read(MAX_BYTES + 1)
            size = len(text.encode("utf-8"))
        else:
            with path.open("rb") as stream:
                data = stream.read(MAX_BYTES + 1)
            size, text = len(data), data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TargetError(f"cannot read {path}: {reason}") from None
    if size > MAX_BYTES:
        raise TargetError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; split the file")
    return parse_csv(text.removeprefix("\ufeff"), source=str(path))
