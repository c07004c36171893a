"""STARTTLS against the real servers Debian packages (not emulations): slapd (StartTLS extended
operation and LDAPS), PostgreSQL (a private cluster: initdb in a temp dir), MariaDB (a private
mariadbd on a temp datadir), prosody (XMPP client and server streams), vsftpd (FTP ``AUTH TLS``)
and xrdp (RDP with TLS security).

Each fixture starts its server as a child process on its own 127.x address and a free port,
with its own data directory, configuration and a fresh certificate chain (an RSA leaf for
``localhost`` and its intermediate), waits (bounded) until the port accepts, and stops the
process in teardown. A test probes the port through the engine with the protocol named, as
``-p PORT/PROTOCOL`` does, and the chain that comes back must be exactly the one configured.
Servers that refuse to run as root run as their Debian system user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pytest
import trio

from scanner.engine.crew import probe
from scanner.lab import certgen
from scanner.models import EngineLimits, Handshake, Target
from tests.conftest import missing, require_tool

LIMITS = EngineLimits(connect_timeout=3.0, handshake_timeout=5.0, target_deadline=8.0)
START_SECONDS = 60.0  # initdb and a first mariadbd start take a few seconds on a busy machine
_addresses = count(1)


def fresh_address() -> str:
    """A distinct 127.95.x.y per server."""
    n = next(_addresses)
    return f"127.95.{n // 250}.{n % 250 + 1}"


def free_port(address: str) -> int:
    """A port free on ``address`` now (these daemons take no port 0)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Pki:
    """The chain a server is configured with, and where its files are."""

    leaf: certgen.Issued
    intermediate: certgen.Issued
    dir: Path

    @property
    def chain(self) -> tuple[bytes, bytes]:
        return (self.leaf.der, self.intermediate.der)

    @property
    def cert(self) -> str:
        return str(self.dir / "chain.pem")  # leaf then intermediate

    @property
    def key(self) -> str:
        return str(self.dir / "key.pem")


@pytest.fixture(scope="module")
def issuer() -> tuple[certgen.Issued, certgen.Issued]:
    root = certgen.make_ca("certscan real-server root", key=certgen.make_key("rsa"))
    return root, certgen.make_ca(
        "certscan real-server CA", issuer=root, key=certgen.make_key("rsa")
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A temp dir every system user can traverse (pytest's own is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="certscan-real-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_pki(issuer: tuple[certgen.Issued, certgen.Issued], where: Path, owner: str | None) -> Pki:
    _, inter = issuer
    leaf = certgen.make_leaf(
        inter, cn="localhost", dns_names=["localhost"], key=certgen.make_key("rsa")
    )
    where.mkdir(mode=0o755, exist_ok=True)
    (where / "chain.pem").write_bytes(certgen.chain_pem(leaf, inter))
    key = where / "key.pem"
    key.write_bytes(leaf.key_pem)
    key.chmod(0o600)
    if owner is not None:
        chown(owner, where, where / "chain.pem", key)
    return Pki(leaf, inter, where)


def chown(user: str, *paths: Path) -> None:
    for path in paths:
        shutil.chown(path, user, user)


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``user`` when we are root (the daemons that refuse root)."""
    if os.geteuid() != 0:
        return list(argv)
    return [require_tool("setpriv"), f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]


@dataclass
class Server:
    """A running server: where it listens (port by role), its chain and its log."""

    address: str
    ports: dict[str, int]
    pki: Pki
    log: Path
    process: trio.Process | None = None


async def accepting(address: str, port: int, process: trio.Process, log: Path) -> None:
    """Return once ``address:port`` accepts a TCP connection; fail if the server exits or
    ``START_SECONDS`` pass. Polls: an external process cannot notify us."""
    with trio.fail_after(START_SECONDS):
        while True:
            if process.returncode is not None:
                raise AssertionError(f"server exited {process.returncode}: {tail(log)}")
            try:
                stream = await trio.open_tcp_stream(address, port)
            except OSError:
                await trio.sleep(0.1)
                continue
            await stream.aclose()
            return


def tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


async def stop(process: trio.Process) -> None:
    """SIGTERM to the server's process group, SIGKILL after ten seconds."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            with trio.move_on_after(10):
                os.killpg(process.pid, signal.SIGTERM)
                await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def launch(argv: Sequence[str], log: Path, **kwargs: object) -> trio.Process:
    with log.open("ab") as out:
        return await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its children too
            **kwargs,  # type: ignore[arg-type]
        )


async def handshake(server: Server, port: str, protocol: str) -> Handshake:
    target = Target(
        address=server.address, port=server.ports[port], sni="localhost", protocol=protocol
    )
    outcome = await probe(target, LIMITS)
    assert isinstance(outcome, Handshake), (outcome, tail(server.log))
    return outcome


@asynccontextmanager
async def serving(
    argv: Sequence[str], out: Path, server: Server, **kwargs: object
) -> AsyncIterator[Server]:
    """Start ``argv`` (output to ``out``), wait until every port of ``server`` accepts, yield
    ``server`` with its process, and stop the process however the block ends."""
    process = await launch(argv, out, **kwargs)
    try:
        for port in server.ports.values():
            await accepting(server.address, port, process, out)
        server.process = process
        yield server
    finally:
        await stop(process)


# --- slapd ----------------------------------------------------------------------------------


@asynccontextmanager
async def start_slapd(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    binary = require_tool("slapd")
    pki = make_pki(issuer, workdir / "tls", None)
    address = fresh_address()
    ports = {"ldap": free_port(address), "ldaps": free_port(address)}
    (workdir / "db").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        f"pidfile {workdir}/slapd.pid\n"
        "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        f"TLSCertificateFile {pki.cert}\nTLSCertificateKeyFile {pki.key}\n"
        'database mdb\nsuffix "dc=certscan,dc=test"\n'
        f"directory {workdir}/db\nmaxsize 10485760\n"
    )
    urls = f"ldap://{address}:{ports['ldap']}/ ldaps://{address}:{ports['ldaps']}/"
    log = workdir / "slapd.log"
    argv = [binary, "-d", "0", "-h", urls, "-f", str(conf)]
    async with serving(argv, log, Server(address, ports, pki, log)) as server:
        yield server


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """A PostgreSQL server binary: the Debian package keeps them off PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else require_tool(name)


@asynccontextmanager
async def start_postgres(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    initdb, server = pg_tool("initdb"), pg_tool("postgres")
    user = "postgres" if os.geteuid() == 0 else None
    pki = make_pki(issuer, workdir / "tls", user)
    data, log = workdir / "data", workdir / "postgres.log"
    if user is not None:
        chown(user, workdir)
    with trio.fail_after(START_SECONDS):
        made = await trio.run_process(
            as_user("postgres", [initdb, "-D", str(data), "-A", "trust", "-U", "certscan",
                                 "--no-sync", "--no-instructions"]),
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    address = fresh_address()
    ports = {"postgres": free_port(address)}
    settings = {
        "listen_addresses": address,
        "port": str(ports["postgres"]),
        "unix_socket_directories": str(workdir),
        "ssl": "on",
        "ssl_cert_file": pki.cert,
        "ssl_key_file": pki.key,
        "fsync": "off",
        "shared_buffers": "16MB",
    }
    argv = [server, "-D", str(data), *(f"-c{k}={v}" for k, v in settings.items())]
    async with serving(as_user("postgres", argv), log, Server(address, ports, pki, log)) as server:
        yield server


# --- MariaDB --------------------------------------------------------------------------------


@asynccontextmanager
async def start_mariadb(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    install, server = require_tool("mariadb-install-db"), require_tool("mariadbd")
    user = "mysql" if os.geteuid() == 0 else None
    pki = make_pki(issuer, workdir / "tls", user)
    data, log = workdir / "data", workdir / "mariadb.log"
    data.mkdir()
    if user is not None:
        chown(user, workdir, data)
    common = ["--no-defaults", f"--datadir={data}", *([f"--user={user}"] if user else [])]
    with trio.fail_after(START_SECONDS):
        made = await trio.run_process(
            [install, *common, "--skip-test-db", "--auth-root-authentication-method=normal"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    address = fresh_address()
    ports = {"mysql": free_port(address)}
    argv = [
        server, *common,
        f"--bind-address={address}", f"--port={ports['mysql']}",
        f"--socket={workdir}/mysqld.sock", f"--pid-file={workdir}/mysqld.pid",
        f"--log-error={log}", f"--ssl-cert={pki.cert}", f"--ssl-key={pki.key}",
        "--innodb-buffer-pool-size=16M", "--skip-log-bin", "--skip-name-resolve",
    ]  # fmt: skip
    async with serving(argv, workdir / "mariadbd.out", Server(address, ports, pki, log)) as server:
        yield server


# --- vsftpd ---------------------------------------------------------------------------------


@asynccontextmanager
async def start_vsftpd(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    binary = require_tool("vsftpd")
    pki = make_pki(issuer, workdir / "tls", None)
    address = fresh_address()
    ports = {"ftp": free_port(address)}
    empty = workdir / "empty"
    empty.mkdir(mode=0o555)
    log = workdir / "vsftpd.log"
    conf = workdir / "vsftpd.conf"
    conf.write_text(
        "listen=YES\nlisten_ipv6=NO\nbackground=NO\n"
        f"listen_address={address}\nlisten_port={ports['ftp']}\n"
        # local logins are on (vsftpd wants one kind) but no PAM service of this name exists
        "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\npam_service_name=certscan-none\n"
        f"secure_chroot_dir={empty}\nseccomp_sandbox=NO\n"
        f"xferlog_enable=YES\nvsftpd_log_file={log}\n"
        f"ssl_enable=YES\nrsa_cert_file={pki.cert}\nrsa_private_key_file={pki.key}\n"
        "ssl_ciphers=HIGH\nrequire_ssl_reuse=NO\n"
    )
    conf.chmod(0o600)  # vsftpd refuses a config file others may write
    out = workdir / "vsftpd.out"
    async with serving([binary, str(conf)], out, Server(address, ports, pki, out)) as server:
        yield server


# --- prosody --------------------------------------------------------------------------------


@asynccontextmanager
async def start_prosody(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    binary = require_tool("prosody")
    user = "prosody" if os.geteuid() == 0 else None
    pki = make_pki(issuer, workdir / "tls", user)
    address = fresh_address()
    ports = {"c2s": free_port(address), "s2s": free_port(address)}
    data, log = workdir / "data", workdir / "prosody.log"
    data.mkdir()
    conf = workdir / "prosody.cfg.lua"
    conf.write_text(
        f'pidfile = "{workdir}/prosody.pid"\ndata_path = "{data}"\ndaemonize = false\n'
        f'interfaces = {{ "{address}" }}\n'
        f"c2s_ports = {{ {ports['c2s']} }}\ns2s_ports = {{ {ports['s2s']} }}\n"
        "c2s_direct_tls_ports = {}\ns2s_direct_tls_ports = {}\n"
        "http_ports = {}\nhttps_ports = {}\ncomponent_ports = {}\n"
        'modules_enabled = { "tls", "dialback", "saslauth" }\n'
        'modules_disabled = { "offline", "c2s_bidi" }\n'
        f'ssl = {{ certificate = "{pki.cert}", key = "{pki.key}" }}\n'
        f'log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{log}" }} }}\n'
        'VirtualHost "localhost"\n'
    )
    if user is not None:
        chown(user, workdir, data, conf)
    env = {**os.environ, "PROSODY_CONFIG": str(conf)}
    argv = as_user("prosody", [binary, "--config", str(conf)])
    out = workdir / "prosody.out"
    async with serving(argv, out, Server(address, ports, pki, log), env=env) as server:
        yield server


# --- xrdp -----------------------------------------------------------------------------------


def xrdp_ini(system: str, address: str, port: int, pki: Pki, log: Path) -> str:
    """The system's xrdp.ini with our listener, TLS security, chain and log file."""
    ours = {
        "port": f"tcp://{address}:{port}",
        "security_layer": "tls",
        "certificate": pki.cert,
        "key_file": pki.key,
        "ssl_protocols": "TLSv1.2, TLSv1.3",
        "fork": "false",
        "LogFile": str(log),
        "EnableSyslog": "false",
    }
    out, section, done = [], "", set()
    for line in system.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        key = stripped.partition("=")[0].strip()
        if section in ("[Globals]", "[Logging]") and key in ours and key not in done:
            line = f"{key}={ours[key]}"
            done.add(key)
        out.append(line)
    assert done == set(ours), set(ours) - done
    return "\n".join(out) + "\n"


@asynccontextmanager
async def start_xrdp(
    issuer: tuple[certgen.Issued, certgen.Issued], workdir: Path
) -> AsyncIterator[Server]:
    """xrdp reads /etc/xrdp/xrdp.ini and writes /run/xrdp: it runs in a mount namespace of its
    own (``unshare``) where our ini and a temp dir are bound over those paths (on a private
    /run when the machine has no /run/xrdp), so the machine's files are never touched."""
    binary, unshare = require_tool("xrdp"), require_tool("unshare")
    system_ini = Path("/etc/xrdp/xrdp.ini")
    if not system_ini.is_file():
        missing("/etc/xrdp/xrdp.ini is missing (apt-get install xrdp)")
    if os.geteuid() != 0:
        missing("xrdp's private mount namespace (unshare --mount) needs root")
    pki = make_pki(issuer, workdir / "tls", None)
    address = fresh_address()
    ports = {"rdp": free_port(address)}
    log = workdir / "xrdp.log"
    ini = workdir / "xrdp.ini"
    ini.write_text(xrdp_ini(system_ini.read_text(), address, ports["rdp"], pki, log))
    (workdir / "run").mkdir()
    # Without /run/xrdp (the package's service makes it at boot), a private tmpfs on /run
    # inside the namespace gives the bind a place to land; the machine's /run is never touched.
    script = (
        f"mount --bind {ini} /etc/xrdp/xrdp.ini && "
        "{ [ -d /run/xrdp ] || { mount -t tmpfs certscan-run /run && mkdir /run/xrdp; }; } && "
        f"mount --bind {workdir}/run /run/xrdp && exec {binary} --nodaemon"
    )
    argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script]
    async with serving(argv, workdir / "xrdp.out", Server(address, ports, pki, log)) as server:
        yield server


# --- every server above, each port with the protocol it speaks ------------------------------

SERVERS = [
    pytest.param(start_slapd, (("ldap", "ldap"), ("ldaps", "tls")), id="slapd-starttls-and-ldaps"),
    pytest.param(start_postgres, (("postgres", "postgres"),), id="postgres-sslrequest"),
    pytest.param(start_mariadb, (("mysql", "mysql"),), id="mariadb-ssl-capability"),
    pytest.param(start_vsftpd, (("ftp", "ftp"),), id="vsftpd-auth-tls"),
    pytest.param(
        start_prosody, (("c2s", "xmpp"), ("s2s", "xmpp-server")), id="prosody-client-and-server"
    ),
    pytest.param(start_xrdp, (("rdp", "rdp"),), id="xrdp-tls-security"),
]


@pytest.mark.parametrize(("start", "ports"), SERVERS)
async def test_real_server_presents_its_chain(
    start: Callable[
        [tuple[certgen.Issued, certgen.Issued], Path], AbstractAsyncContextManager[Server]
    ],
    ports: tuple[tuple[str, str], ...],
    issuer: tuple[certgen.Issued, certgen.Issued],
    workdir: Path,
) -> None:
    """The real server's chain arrives whole through each of its ports' protocols."""
    async with start(issuer, workdir) as server:
        for port, protocol in ports:
            outcome = await handshake(server, port, protocol)
            assert outcome.chain == server.pki.chain, (port, protocol)
            assert outcome.protocol == protocol
