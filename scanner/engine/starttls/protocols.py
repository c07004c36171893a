"""STARTTLS: the plaintext each protocol speaks before its TLS handshake, and the table of them.

Theory of operation
-------------------
:func:`negotiate` runs one protocol's preamble on a connected socket and returns once the server
is ready for a ClientHello (``None``), or with a :class:`~scanner.engine.tls.Fault` saying why it is
not. The engine calls it between the TCP connect and :func:`scanner.engine.tls.handshake`, inside
the
target's cancel scope, so the per-target deadline bounds the time; this module bounds the bytes:
one :class:`Session` reads at most :data:`MAX_PREAMBLE_BYTES` from the server, in chunks of at
most :data:`_CHUNK`, and a server sending more (an endless greeting, a capability list that
never ends) is cut off with ``protocol_error``. Every protocol element is read through the
session: ``line`` (CRLF or LF), ``exactly`` (binary framing with its own length field) and
``until`` (XMPP, whose elements have no line structure).

A preamble function reads and writes through its session and raises :class:`Stop` with the
fault when the server declines: a negative reply, a missing capability, or bytes that are not
the protocol at all are ``starttls_refused`` with the reply quoted (sanitised and truncated by
:func:`quote`, since every byte is the server's); the connection closing is ``reset``. Socket
errors and cancellation propagate to the engine, which classifies the first and owns the
second.

In every protocol here the client speaks first once TLS starts, so a well-behaved server sends
nothing after its final plaintext answer. Bytes read past that answer (possible only in one
chunk with it) are dropped: the TLS handshake starts from the next byte the server sends.

:data:`STARTTLS_PORTS` names the protocol of each well-known STARTTLS port; every other port is
implicit TLS. :func:`greeting_protocol` recognises a plaintext greeting in the first bytes of a
``not_tls`` failure, which is how the engine falls back from implicit TLS on an unusual port.
The binary protocols (LDAP, PostgreSQL, MySQL, RDP) are in ``scanner.engine.starttls.binary``.
"""

from __future__ import annotations

import re
import socket
from typing import Final

from scanner.engine import tls
from scanner.engine.starttls import binary
from scanner.engine.starttls.session import MAX_PREAMBLE_BYTES, Preamble, Session, Stop
from scanner.models import Target

# --- line protocols -------------------------------------------------------------------------

_CODE = re.compile(rb"[0-9]{3}(?:[ -]|$)")


async def numeric_reply(session: Session) -> tuple[bytes, bytes]:
    """An SMTP/FTP reply: ``(code, all its lines)``; ``code`` is ``b""`` when the first line
    does not start with one. A multi-line reply (``250-...``) ends at the first line starting
    with its code and a space (SMTP repeats the code on every line, FTP need not)."""
    first = await session.line()
    if _CODE.match(first) is None:
        return b"", first
    code, lines = first[:3], [first]
    if first[3:4] == b"-":
        while not (line := await session.line()).startswith(code + b" ") and line != code:
            lines.append(line)
        lines.append(line)
    return code, b"\n".join(lines)


def _client_name(sock: socket.socket) -> bytes:
    """Our EHLO argument: the local address as an RFC 5321 address literal."""
    address = str(sock.getsockname()[0])
    return (f"[IPv6:{address}]" if ":" in address else f"[{address}]").encode("ascii")


def _offers_starttls(ehlo: bytes) -> bool:
    return any(line[4:].split(b" ", 1)[0].upper() == b"STARTTLS" for line in ehlo.split(b"\n"))


async def _smtp(session: Session, target: Target) -> None:
    code, greeting = await numeric_reply(session)
    if code != b"220":
        raise session.declined("the greeting is not 220", greeting)
    await session.send(b"EHLO " + _client_name(session.sock) + b"\r\n")
    code, ehlo = await numeric_reply(session)
    if code != b"250":
        raise session.declined("EHLO refused", ehlo)
    if not _offers_starttls(ehlo):
        raise session.declined("STARTTLS is not in the EHLO reply", ehlo)
    await session.send(b"STARTTLS\r\n")
    code, reply = await numeric_reply(session)
    if code != b"220":
        raise session.declined("STARTTLS refused", reply)


async def _ftp(session: Session, target: Target) -> None:
    code, greeting = await numeric_reply(session)
    while code[:1] == b"1":  # "120 service ready in nnn minutes": the 220 follows
        code, greeting = await numeric_reply(session)
    if code != b"220":
        raise session.declined("the greeting is not 220", greeting)
    await session.send(b"AUTH TLS\r\n")
    code, reply = await numeric_reply(session)
    if code != b"234":
        raise session.declined("AUTH TLS refused", reply)


async def _imap(session: Session, target: Target) -> None:
    greeting = await session.line()
    if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
        raise session.declined("the greeting is not * OK", greeting)
    await session.send(b"a1 STARTTLS\r\n")
    while not (reply := await session.line()).upper().startswith(b"A1 "):
        pass  # untagged responses (a CAPABILITY update, an alert) come before the tagged one
    if not reply[3:].upper().startswith(b"OK"):
        raise session.declined("STARTTLS refused", reply)


async def _pop3(session: Session, target: Target) -> None:
    greeting = await session.line()
    if not greeting.startswith(b"+OK"):
        raise session.declined("the greeting is not +OK", greeting)
    await session.send(b"STLS\r\n")
    reply = await session.line()
    if not reply.startswith(b"+OK"):
        raise session.declined("STLS refused", reply)


# --- XMPP -----------------------------------------------------------------------------------

_TAG = rb"<(?:[A-Za-z0-9_.-]+:)?"
_FEATURES_END = re.compile(
    _TAG + rb"starttls[\s/>]|</(?:[A-Za-z0-9_.-]+:)?(?:features|stream)>|"
    + _TAG + rb"features\s*/>|" + _TAG + rb"error[\s/>]"
)  # fmt: skip
_ANSWER = re.compile(
    _TAG + rb"(?:proceed|failure)[\s/>]|</(?:[A-Za-z0-9_.-]+:)?stream>|" + _TAG + rb"error[\s/>]"
)
_XMPP_TLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def _xml_attribute(value: str) -> bytes:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
    return escaped.encode("ascii", "xmlcharrefreplace")


def _local_name(tag: bytes) -> bytes:
    """``b"features"`` for ``</stream:features>``, ``b"starttls"`` for ``<starttls ...``."""
    name = tag.lstrip(b"</").split(b":", 1)[-1]
    return re.split(rb"[\s/>]", name, maxsplit=1)[0]


def _xmpp(namespace: bytes) -> Preamble:
    async def preamble(session: Session, target: Target) -> None:
        to = _xml_attribute(target.sni or target.address)
        await session.send(
            b"<?xml version='1.0'?><stream:stream xmlns='" + namespace + b"' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='" + to + b"' version='1.0'>"
        )
        before, found = await session.until(_FEATURES_END)
        name = _local_name(found)
        if name != b"starttls":
            opened = before.find(b"features")  # quote the features from their opening tag
            reply = (
                before[before.rfind(b"<", 0, opened) :] + found
                if name == b"features" and opened >= 0
                else found + session.pending()
            )
            raise session.declined("no <starttls> in the stream features", reply)
        await session.send(_XMPP_TLS)
        _, found = await session.until(_ANSWER)
        if _local_name(found) != b"proceed":
            raise session.declined("STARTTLS refused", found + session.pending())

    return preamble


# --- the table ------------------------------------------------------------------------------


#: Every STARTTLS protocol with its preamble (``tls`` has none).
PREAMBLES: Final[dict[str, Preamble]] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "ldap": binary.ldap,
    "xmpp": _xmpp(b"jabber:client"),
    "xmpp-server": _xmpp(b"jabber:server"),
    "postgres": binary.postgres,
    "mysql": binary.mysql,
    "rdp": binary.rdp,
}


async def negotiate(protocol: str, sock: socket.socket, target: Target) -> tls.Fault | None:
    """Speak ``protocol``'s preamble on ``sock`` until the server is ready for TLS.

    ``None`` when it is, else the fault. ``target`` supplies the name some protocols send
    (XMPP's ``to``: the SNI, else the address). ``OSError`` and cancellation propagate.
    """
    session = Session(sock, protocol)
    try:
        await PREAMBLES[protocol](session, target)
    except Stop as stop:
        return stop.fault
    return None


# --- recognising a greeting -----------------------------------------------------------------


def greeting_protocol(opening: bytes) -> str | None:
    """The STARTTLS protocol a server's unprompted first bytes announce, or ``None``.

    ``220`` is SMTP or FTP (FTP when the line names FTP and not SMTP), ``* OK`` IMAP, ``+OK``
    POP3, and a MySQL initial handshake packet (sequence 0, protocol 10, or an error packet)
    MySQL. Only servers that speak first are recognisable; the others say nothing to a client
    that sends a ClientHello, or hang up.
    """
    if opening.startswith(b"220") and opening[3:4] in (b"", b" ", b"-"):
        first = opening.split(b"\n", 1)[0].upper()
        return "ftp" if b"FTP" in first and b"SMTP" not in first else "smtp"
    if opening[:4].upper() in (b"* OK", b"* PR"):
        return "imap"
    if opening.startswith(b"+OK"):
        return "pop3"
    if len(opening) >= 5 and opening[3] == 0 and opening[4] in (0x0A, 0xFF):
        length = int.from_bytes(opening[:3], "little")
        if 8 <= length <= MAX_PREAMBLE_BYTES:
            return "mysql"
    return None
