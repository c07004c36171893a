"""STARTTLS through the engine: a loopback server per protocol speaks the plaintext preamble,
then TLS with the standard library; the chain must come through each. Then the servers that
decline, the ones that never stop talking, and the fallback from implicit TLS on odd ports."""

from __future__ import annotations

import ssl
import struct
from collections.abc import Awaitable, Callable
from itertools import count

import pytest
import trio

from scanner import models
from scanner.engine.crew import probe
from scanner.engine.starttls import binary as starttls_binary
from scanner.engine.starttls import protocols as starttls
from scanner.engine.starttls import session
from scanner.models import PROTOCOLS, EngineLimits, FailureKind, Handshake, ScanFailure, Target
from tests import peers

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)
_addresses = count(1)


def fresh_address() -> str:
    """A distinct 127.96.x.y per server."""
    n = next(_addresses)
    return f"127.96.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


@pytest.fixture(scope="module")
def ctx(pki: peers.Pki) -> ssl.SSLContext:
    return peers.server_context(pki.served)


class Wire:
    """The server's side of a plaintext conversation on one accepted stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _more(self, most: int = 4096) -> None:
        data = await self.stream.receive_some(most)
        if not data:
            raise trio.BrokenResourceError("the client left")  # serve() ends the handler
        self.buf += data

    async def line(self) -> bytes:
        while b"\n" not in self.buf:
            await self._more()
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return line.rstrip(b"\r")

    async def exactly(self, size: int) -> bytes:
        while len(self.buf) < size:  # never more: a MySQL client sends its hello right after
            await self._more(size - len(self.buf))
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    async def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            await self._more()
        data, _, rest = bytes(self.buf).partition(marker)
        self.buf = bytearray(rest)
        return data + marker

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        """Hand the stream to TLS (nothing may be left unread) and serve until the client
        leaves."""
        assert not self.buf, bytes(self.buf)
        tls = trio.SSLStream(self.stream, ctx, server_side=True)
        await tls.do_handshake()
        while await tls.receive_some(4096):
            pass


Script = Callable[[Wire, ssl.SSLContext], Awaitable[None]]


def handler(script: Script, ctx: ssl.SSLContext) -> peers.Handler:
    async def handle(stream: trio.SocketStream) -> None:
        await script(Wire(stream), ctx)

    return handle


# --- one healthy server per protocol --------------------------------------------------------


async def smtp(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"220-mail.test ESMTP certscan test\r\n220 ready when you are\r\n")
    ehlo = await wire.line()
    if not ehlo.startswith(b"EHLO [127."):
        await wire.send(b"500 5.5.2 what?\r\n")  # a ClientHello, say
        return
    await wire.send(b"250-mail.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
    assert await wire.line() == b"STARTTLS"
    await wire.send(b"220 2.0.0 go ahead\r\n")
    await wire.start_tls(ctx)


async def imap(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
    assert await wire.line() == b"a1 STARTTLS"
    await wire.send(b"* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK Begin TLS negotiation now\r\n")
    await wire.start_tls(ctx)


async def pop3(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"+OK POP3 ready\r\n")
    assert await wire.line() == b"STLS"
    await wire.send(b"+OK Begin TLS\r\n")
    await wire.start_tls(ctx)


async def ftp(wire: Wire, ctx: ssl.SSLContext) -> None:
    # FTP multi-line replies need not repeat the code on the lines between.
    await wire.send(b"220-Welcome to the test FTP service\r\n be nice\r\n220 ready\r\n")
    assert await wire.line() == b"AUTH TLS"
    await wire.send(b"234 AUTH TLS successful\r\n")
    await wire.start_tls(ctx)


def ldap_response(code: int, diagnostic: bytes = b"", *, long_form: bool = False) -> bytes:
    ber = starttls_binary._ber
    result = ber(0x0A, bytes((code,))) + ber(0x04, b"") + ber(0x04, diagnostic)
    body = ber(0x02, b"\x01") + ber(0x78, result)
    if long_form:  # a length in the long form, as some servers send every length
        return bytes((0x30, 0x81, len(body))) + body
    return ber(0x30, body)


async def ldap(wire: Wire, ctx: ssl.SSLContext) -> None:
    request = await wire.exactly(len(starttls_binary.LDAP_STARTTLS))
    assert request[:2] == b"\x30\x1d"
    assert request.endswith(b"\x80\x161.3.6.1.4.1.1466.20037")
    await wire.send(ldap_response(0, long_form=True))
    await wire.start_tls(ctx)


def xmpp_server(namespace: bytes) -> Script:
    async def script(wire: Wire, ctx: ssl.SSLContext) -> None:
        header = await wire.until(b"version='1.0'>")
        assert b"xmlns='" + namespace + b"'" in header
        assert b"to='localhost'" in header
        await wire.send(
            b"<?xml version='1.0'?><stream:stream xmlns='" + namespace + b"' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='c2s1' from='localhost' "
            b"version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            b"<required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        )
        assert await wire.until(b"/>") == b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        await wire.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await wire.start_tls(ctx)

    return script


async def postgres(wire: Wire, ctx: ssl.SSLContext) -> None:
    assert await wire.exactly(8) == struct.pack("!II", 8, 80877103)
    await wire.send(b"S")
    await wire.start_tls(ctx)


def mysql_greeting(capabilities: int) -> bytes:
    payload = (
        b"\x0a8.0.36-certscan-test\x00"
        + struct.pack("<I", 42)  # connection id
        + b"abcdefgh\x00"  # auth data part 1, filler
        + struct.pack("<HBHH", capabilities & 0xFFFF, 33, 2, capabilities >> 16)
        + b"\x15" + bytes(10) + b"ijklmnopqrst\x00" + b"caching_sha2_password\x00"
    )  # fmt: skip
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


async def mysql(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(mysql_greeting(0xFFFF_F7FF | starttls_binary.CLIENT_SSL))
    header = await wire.exactly(4)
    assert header == b"\x20\x00\x00\x01"  # 32 bytes, sequence 1
    flags, max_packet, charset = struct.unpack("<IIB", (await wire.exactly(32))[:9])
    assert (max_packet, charset) == (1 << 24, 33)
    assert flags & starttls_binary.CLIENT_SSL
    assert flags & starttls_binary.CLIENT_PROTOCOL_41
    await wire.start_tls(ctx)


def rdp_confirm(kind: int, value: int) -> bytes:
    tpdu = bytes((0xD0, 0, 0, 0x12, 0x34, 0)) + struct.pack("<BBHI", kind, 0, 8, value)
    return struct.pack("!BBH", 3, 0, 5 + len(tpdu)) + bytes((len(tpdu),)) + tpdu


async def rdp(wire: Wire, ctx: ssl.SSLContext) -> None:
    request = await wire.exactly(19)
    assert request[:4] == b"\x03\x00\x00\x13"  # TPKT, 19 bytes
    assert request[5] == 0xE0  # X.224 Connection Request
    kind, _, size, protocols = struct.unpack("<BBHI", request[11:])
    assert (kind, size) == (1, 8)
    assert protocols & starttls_binary.PROTOCOL_SSL
    await wire.send(rdp_confirm(2, starttls_binary.PROTOCOL_SSL))
    await wire.start_tls(ctx)


SERVERS: dict[str, Script] = {
    "smtp": smtp,
    "imap": imap,
    "pop3": pop3,
    "ftp": ftp,
    "ldap": ldap,
    "xmpp": xmpp_server(b"jabber:client"),
    "xmpp-server": xmpp_server(b"jabber:server"),
    "postgres": postgres,
    "mysql": mysql,
    "rdp": rdp,
}


def test_every_protocol_has_a_preamble_a_server_and_a_name() -> None:
    assert set(starttls.PREAMBLES) == set(SERVERS) == set(PROTOCOLS) - {"tls"}
    assert set(models.STARTTLS_PORTS.values()) <= set(starttls.PREAMBLES)


async def outcome_of(
    script: Script, ctx: ssl.SSLContext, protocol: str | None, limits: EngineLimits = FAST
) -> tuple[Handshake | ScanFailure, peers.Peer]:
    async with peers.serve(fresh_address(), handler(script, ctx)) as peer:
        target = Target(address=peer.address, port=peer.port, sni="localhost", protocol=protocol)
        outcome = await probe(target, limits)
    return outcome, peer


@pytest.mark.parametrize("protocol", sorted(SERVERS))
async def test_the_chain_comes_through_each_protocol(
    protocol: str, pki: peers.Pki, ctx: ssl.SSLContext
) -> None:
    outcome, peer = await outcome_of(SERVERS[protocol], ctx, protocol)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.chain == (pki.leaf.der, pki.intermediate.der)
    assert outcome.tls_version == "TLSv1.3"
    assert outcome.protocol == protocol  # recorded: the protocol actually spoken
    assert peer.tally.accepted == 1


async def test_a_well_known_port_speaks_its_protocol(
    monkeypatch: pytest.MonkeyPatch, pki: peers.Pki, ctx: ssl.SSLContext
) -> None:
    async with peers.serve(fresh_address(), handler(imap, ctx)) as peer:
        # The test cannot bind port 143; the engine's port table is what it consults.
        monkeypatch.setitem(models.STARTTLS_PORTS, peer.port, "imap")
        outcome = await probe(peer.target("localhost"), FAST)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.chain == (pki.leaf.der, pki.intermediate.der)
    assert outcome.protocol == "imap"
    assert peer.tally.accepted == 1


async def test_legacy_probe_speaks_the_preamble_too(pki: peers.Pki) -> None:
    legacy = peers.server_context(
        pki.served, minimum=ssl.TLSVersion.TLSv1, ciphers="DEFAULT:@SECLEVEL=0"
    )
    limits = EngineLimits(probe_protocols=True, handshake_timeout=2.0, target_deadline=3.0)
    outcome, peer = await outcome_of(smtp, legacy, "smtp", limits)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.legacy_versions == ("TLSv1.1", "TLSv1")
    assert peer.tally.accepted == 3


# --- servers that decline -------------------------------------------------------------------


async def smtp_without_starttls(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"220 mail.test ESMTP\r\n")
    await wire.line()
    await wire.send(b"250-mail.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    await wire.line()


async def imap_no(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"* OK ready\r\n")
    await wire.line()
    await wire.send(b"a1 NO [UNAVAILABLE] STARTTLS is disabled here\r\n")
    await wire.line()


async def pop3_err(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"+OK ready\r\n")
    await wire.line()
    await wire.send(b"-ERR TLS not available\r\n")
    await wire.line()


async def ftp_no_auth(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"220 old ftpd\r\n")
    await wire.line()
    await wire.send(b"500 AUTH not understood\r\n")
    await wire.line()


async def ldap_protocol_error(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.exactly(len(starttls_binary.LDAP_STARTTLS))
    await wire.send(ldap_response(2, b"unsupported extended operation"))
    await wire.line()


async def xmpp_without_starttls(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.until(b"version='1.0'>")
    await wire.send(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        b"version='1.0'><stream:features><mechanisms/></stream:features>"
    )
    await wire.line()


async def xmpp_failure(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.until(b"version='1.0'>")
    await wire.send(b"<stream:stream><stream:features><starttls/></stream:features>")
    await wire.until(b"/>")
    await wire.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
    await wire.line()


async def postgres_n(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.exactly(8)
    await wire.send(b"N")
    await wire.line()


async def mysql_without_ssl(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(mysql_greeting(0xFFFF_F7FF))
    await wire.line()


async def mysql_blocked(wire: Wire, ctx: ssl.SSLContext) -> None:
    message = b"Host '127.0.0.1' is blocked because of many connection errors"
    payload = b"\xff" + struct.pack("<H", 1129) + b"#HY000" + message
    await wire.send(len(payload).to_bytes(3, "little") + b"\x00" + payload)
    await wire.line()


async def rdp_ssl_not_allowed(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.exactly(19)
    await wire.send(rdp_confirm(3, 2))
    await wire.line()


async def ssh_on_the_smtp_port(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(peers.SSH_BANNER)
    await wire.line()


@pytest.mark.parametrize(
    ("protocol", "script", "detail"),
    [
        (
            "smtp",
            smtp_without_starttls,
            "smtp: STARTTLS is not in the EHLO reply: 250-mail.test / 250-PIPELINING / 250 8BIT",
        ),
        ("imap", imap_no, "imap: STARTTLS refused: a1 NO [UNAVAILABLE] STARTTLS is disabled"),
        ("pop3", pop3_err, "pop3: STLS refused: -ERR TLS not available"),
        ("ftp", ftp_no_auth, "ftp: AUTH TLS refused: 500 AUTH not understood"),
        (
            "ldap",
            ldap_protocol_error,
            "ldap: StartTLS refused, resultCode 2 protocolError: unsupported extended operation",
        ),
        ("xmpp", xmpp_without_starttls, "no <starttls> in the stream features: <stream:features>"),
        ("xmpp", xmpp_failure, "xmpp: STARTTLS refused: <failure xmlns="),
        ("postgres", postgres_n, "postgres: the server does not accept SSL (it answered 'N')"),
        ("mysql", mysql_without_ssl, "does not offer SSL (no CLIENT_SSL): 8.0.36-certscan-test"),
        ("mysql", mysql_blocked, "error 1129: Host '127.0.0.1' is blocked because of many"),
        ("rdp", rdp_ssl_not_allowed, "rdp: negotiation failure SSL_NOT_ALLOWED_BY_SERVER"),
        ("smtp", ssh_on_the_smtp_port, "smtp: the greeting is not 220: SSH-2.0-OpenSSH_9.2p1"),
    ],
)
async def test_a_server_that_declines_is_starttls_refused_with_its_reply(
    protocol: str, script: Script, detail: str, ctx: ssl.SSLContext
) -> None:
    outcome, _ = await outcome_of(script, ctx, protocol)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.STARTTLS_REFUSED
    assert outcome.status == "starttls_refused"
    assert detail in outcome.detail
    assert outcome.connected is True


async def test_the_reply_in_the_detail_is_sanitised_and_truncated(ctx: ssl.SSLContext) -> None:
    async def hostile(wire: Wire, ctx: ssl.SSLContext) -> None:
        await wire.send(b"+OK\r\n")
        await wire.line()
        await wire.send(b"-ERR \x1b[31mred\x07\x00" + b"A" * 5000 + b"\r\n")
        await wire.line()

    outcome, _ = await outcome_of(hostile, ctx, "pop3")
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.STARTTLS_REFUSED
    assert "-ERR \\x1b[31mred\\x07\\x00AAA" in outcome.detail
    assert outcome.detail.isprintable()
    assert outcome.detail.endswith("...")
    assert len(outcome.detail) < 300


async def test_a_server_closing_during_the_preamble_is_a_reset(ctx: ssl.SSLContext) -> None:
    async def hangs_up(wire: Wire, ctx: ssl.SSLContext) -> None:
        await wire.send(b"220-still greeting")

    outcome, _ = await outcome_of(hangs_up, ctx, "smtp")
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.RESET
    assert "smtp: connection closed by the peer during the preamble" in outcome.detail
    assert "it had sent: 220-still greeting" in outcome.detail


# --- servers that never stop ----------------------------------------------------------------


async def endless_greeting(wire: Wire, ctx: ssl.SSLContext) -> None:
    while True:
        await wire.send(b"220-" + b"x" * 1000 + b"\r\n")


async def endless_line(wire: Wire, ctx: ssl.SSLContext) -> None:
    await wire.send(b"* OK ")
    while True:
        await wire.send(b"y" * 4096)


@pytest.mark.parametrize(
    ("protocol", "script"), [("smtp", endless_greeting), ("imap", endless_line)]
)
async def test_an_endless_greeting_is_cut_off_at_the_byte_bound(
    protocol: str, script: Script, ctx: ssl.SSLContext
) -> None:
    start = trio.current_time()
    outcome, _ = await outcome_of(script, ctx, protocol)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.PROTOCOL_ERROR
    assert f"more than {session.MAX_PREAMBLE_BYTES} bytes" in outcome.detail
    assert trio.current_time() - start < 1.0  # the byte bound, not a timeout, ended it


async def test_a_dripping_greeting_ends_at_the_deadline(ctx: ssl.SSLContext) -> None:
    async def drip(wire: Wire, ctx: ssl.SSLContext) -> None:
        while True:
            await wire.send(b"2")
            await trio.sleep(0.02)

    limits = EngineLimits(connect_timeout=1.0, handshake_timeout=5.0, target_deadline=0.5)
    start = trio.current_time()
    outcome, _ = await outcome_of(drip, ctx, "smtp", limits)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.TIMEOUT
    assert outcome.detail == "smtp preamble unfinished at the 0.5s per-target deadline"
    assert trio.current_time() - start < 1.0


async def test_a_silent_server_ends_at_the_handshake_timeout(ctx: ssl.SSLContext) -> None:
    async def silent(wire: Wire, ctx: ssl.SSLContext) -> None:
        await wire.line()

    limits = EngineLimits(connect_timeout=1.0, handshake_timeout=0.3, target_deadline=5.0)
    outcome, _ = await outcome_of(silent, ctx, "pop3", limits)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.TIMEOUT
    assert outcome.detail == "pop3 preamble unfinished after the 0.3s handshake timeout"
    assert outcome.elapsed_seconds < 1.0


# --- implicit TLS that meets a plaintext greeting -------------------------------------------


async def test_auto_falls_back_to_smtp_when_an_odd_port_greets_220(
    pki: peers.Pki, ctx: ssl.SSLContext
) -> None:
    outcome, peer = await outcome_of(smtp, ctx, None)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.chain == (pki.leaf.der, pki.intermediate.der)
    assert outcome.protocol == "smtp"  # what the fallback spoke, not what was tried first
    assert peer.tally.accepted == 2  # the implicit-TLS attempt, then SMTP


async def test_auto_falls_back_to_ftp_when_the_greeting_names_ftp(
    pki: peers.Pki, ctx: ssl.SSLContext
) -> None:
    async def vsftpd(wire: Wire, ctx: ssl.SSLContext) -> None:
        await wire.send(b"220 (vsFTPd 3.0.3)\r\n")
        if await wire.line() == b"AUTH TLS":
            await wire.send(b"234 Proceed with negotiation.\r\n")
            await wire.start_tls(ctx)

    outcome, peer = await outcome_of(vsftpd, ctx, None)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.protocol == "ftp"
    assert peer.tally.accepted == 2


async def test_explicit_tls_never_falls_back(ctx: ssl.SSLContext) -> None:
    outcome, peer = await outcome_of(smtp, ctx, "tls")
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.NOT_TLS
    assert "first bytes from the server: b'220-mail.test" in outcome.detail
    assert peer.tally.accepted == 1


async def test_an_unknown_greeting_is_not_retried(ctx: ssl.SSLContext) -> None:
    outcome, peer = await outcome_of(ssh_on_the_smtp_port, ctx, None)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.NOT_TLS
    assert peer.tally.accepted == 1


async def test_the_fallback_shares_the_first_attempts_deadline(ctx: ssl.SSLContext) -> None:
    async def greets_then_stalls(wire: Wire, ctx: ssl.SSLContext) -> None:
        await wire.send(b"220 mail.test ESMTP\r\n")
        await wire.line()
        await trio.sleep_forever()

    limits = EngineLimits(connect_timeout=1.0, handshake_timeout=5.0, target_deadline=0.4)
    start = trio.current_time()
    outcome, peer = await outcome_of(greets_then_stalls, ctx, None, limits)
    assert isinstance(outcome, ScanFailure), outcome
    assert outcome.kind is FailureKind.TIMEOUT
    assert outcome.detail == "smtp preamble unfinished at the 0.4s per-target deadline"
    assert trio.current_time() - start < 0.8  # one deadline for both connections, not two
    assert peer.tally.accepted == 2


@pytest.mark.parametrize(
    ("opening", "protocol"),
    [
        (b"220 mail.example.com ESMTP Postfix\r\n", "smtp"),
        (b"220-mx.example ESMTP\r\n220 ready\r\n", "smtp"),
        (b"220 server Microsoft ESMTP MAIL Service ready\r\n", "smtp"),
        (b"220 ftp.example.com ESMTP\r\n", "smtp"),  # SMTP wins over a host named ftp
        (b"220 (vsFTPd 3.0.3)\r\n", "ftp"),
        (b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n", "ftp"),
        (b"220", "smtp"),  # all that arrived in the first read
        (b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", "imap"),
        (b"* PREAUTH ready\r\n", "imap"),
        (b"+OK Dovecot ready.\r\n", "pop3"),
        (mysql_greeting(0xFFFF), "mysql"),
        (b"\x17\x00\x00\x00\xff\x69\x04Host is blocked", "mysql"),
        (peers.SSH_BANNER, None),
        (peers.HTTP_ANSWER, None),
        (b"2200 not a reply code", None),
        (b"+ERR", None),
        (b"\x00\x00\x00\x00\x0a", None),  # a MySQL-looking header claiming no payload
        (b"", None),
    ],
)
def test_greeting_protocol(opening: bytes, protocol: str | None) -> None:
    assert starttls.greeting_protocol(opening) == protocol


@pytest.mark.parametrize(
    ("reply", "quoted"),
    [
        (b"250-a\r\n250 b\r\n", "250-a / 250 b"),
        (b"\r\n\r\n-ERR x\r\n", "-ERR x"),
        (b"\x1b[2J\xff", "\\x1b[2J\\xff"),
        (b"x" * 250, "x" * 197 + "..."),
        (b"", ""),
    ],
)
def test_quote(reply: bytes, quoted: str) -> None:
    assert session.quote(reply) == quoted
