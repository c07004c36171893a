"""Measuring one tool invocation, and the namespace it runs in.

Theory of operation
-------------------
The benchmark runs in a private network namespace whose only interface is ``lo``.
``assert_private_namespace`` checks that before anything is started: the namespace differs from
the one ``run.sh`` was started in (passed as ``BENCH_HOST_NETNS``) and ``lo`` is the only
interface. ``assert_loopback`` refuses any target outside 127.0.0.0/8.

``Firewall`` installs one nftables table in that namespace: named counters on the SYNs sent to
each target range (the ``output`` hook sees every connection attempt, retransmissions included),
and a ``prerouting`` rule that silently drops SYNs to the dead range, so those hosts never answer,
as on a real network. Counters are reset before each run and read after it.

``timed_run`` starts a tool under ``/usr/bin/time -v`` in its own session, waits at most ``cap``
seconds, and past it kills every process of that session but ``time`` (which then still reports
what the killed tool used), then the whole process group. Wall time is measured here; user+system
CPU and peak RSS come from ``time -v``. That peak RSS is the largest single process's (the
kernel's ``ru_maxrss`` of the children), which undercounts a tool that runs several processes
(``certscan sweep --workers N``), so ``TreeSampler`` also reads ``/proc`` every 50 ms while the
tool runs: every process of its session but ``time`` itself, each one's ``VmHWM`` (its own peak
RSS, kept by the kernel, so a sample only has to catch the process alive) summed over all of
them, and the largest simultaneous sum of ``VmRSS`` seen.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
TABLE = "certscan_bench"


class BenchError(RuntimeError):
    """A precondition of the benchmark does not hold."""


def assert_loopback(*targets: str) -> None:
    """Refuse to go on unless every target (address or CIDR) lies inside 127.0.0.0/8."""
    for target in targets:
        net = ipaddress.ip_network(target, strict=False)
        if not (isinstance(net, ipaddress.IPv4Network) and net.subnet_of(LOOPBACK)):
            raise BenchError(f"target {target} is outside 127.0.0.0/8; refusing to run")


def assert_private_namespace() -> None:
    """Refuse to go on unless this process is in a fresh network namespace with only ``lo``."""
    host = os.environ.get("BENCH_HOST_NETNS", "")
    mine = os.readlink("/proc/self/ns/net")
    if not host or host == mine:
        raise BenchError(
            f"not in a private network namespace (mine {mine}, host {host or 'unknown'}); "
            "start the benchmark with bench/run.sh"
        )
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise BenchError(f"namespace has interfaces {interfaces}, expected only lo")


def _nft(script: str) -> None:
    subprocess.run(
        ["nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
        timeout=30,
        stdout=subprocess.DEVNULL,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Counter:
    """A named nftables counter of SYNs to ``daddr`` (CIDRs or a-b ranges, comma-separated) on
    ``dports`` (comma-separated; empty: the firewall's port, 443)."""

    name: str
    daddr: str
    dports: str = ""


def _nft_set(values: str) -> str:
    """``a`` as is, ``a,b`` as the anonymous set ``{ a, b }``."""
    items = [v.strip() for v in values.split(",") if v.strip()]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


class Firewall:
    """The benchmark's nftables table: SYN counters, and the dead ranges' drop rules (in the
    prerouting hook: the receiving side, as a silent host behaves)."""

    def __init__(
        self,
        counters: Sequence[Counter],
        drop: str | None,
        port: int = 443,
        drops: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._counters = tuple(counters)
        lines = [f"table inet {TABLE} {{"]
        lines += [f"    counter {c.name} {{ }}" for c in self._counters]
        lines.append("    chain out { type filter hook output priority 0; policy accept;")
        for c in self._counters:
            lines.append(
                f"        ip daddr {_nft_set(c.daddr)} tcp dport {_nft_set(c.dports or str(port))} "
                f"tcp flags & (syn | ack) == syn counter name {c.name}"
            )
        lines.append("    }")
        lines.append("    chain pre { type filter hook prerouting priority 0; policy accept;")
        if drop:
            lines.append(
                f"        ip daddr {drop} tcp dport {port} tcp flags & (syn | ack) == syn drop"
            )
        for daddr, dports in drops:  # more silent ranges: (addresses, ports), comma-separated
            lines.append(
                f"        ip daddr {_nft_set(daddr)} tcp dport {_nft_set(dports)} "
                "tcp flags & (syn | ack) == syn drop"
            )
        lines += ["    }", "}"]
        self._script = "\n".join(lines) + "\n"

    def install(self) -> None:
        _nft(f"table inet {TABLE} {{ }}\ndelete table inet {TABLE}\n" + self._script)

    def reset(self) -> None:
        _nft("".join(f"reset counter inet {TABLE} {c.name}\n" for c in self._counters))

    def read(self) -> dict[str, int]:
        """Packets counted by every counter since the last reset."""
        listing = subprocess.run(
            ["nft", "-j", "list", "counters", "table", "inet", TABLE],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        counts: dict[str, int] = {}
        for item in json.loads(listing).get("nftables", []):
            counter = item.get("counter")
            if counter:
                counts[str(counter["name"])] = int(counter["packets"])
        return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStats:
    """How one invocation went. ``cpu_s``/``rss_mb`` are None when ``time -v`` did not report."""

    wall_s: float
    exit_code: int | None  # None: killed at the cap
    timed_out: bool
    cpu_s: float | None
    rss_mb: float | None
    stderr_tail: str
    tree_hwm_mb: float | None = None  # sum of every process's peak RSS (VmHWM), sampled
    tree_rss_mb: float | None = None  # largest sum of VmRSS seen at one sample
    processes: int = 0  # processes of the tool's session seen by the sampler


def _parse_time_v(text: str) -> tuple[float | None, float | None]:
    """(user+sys seconds, peak RSS in MB) from GNU time's ``-v`` report."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().rpartition(": ")
        if sep:
            fields[key] = value
    try:
        cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
        rss = int(fields["Maximum resident set size (kbytes)"]) / 1024
    except (KeyError, ValueError):
        return None, None
    return cpu, rss


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (not namespaced)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


SAMPLE_S = 0.05


def _status_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


class TreeSampler:
    """Memory of every process in the session led by ``leader`` (``time``), ``leader`` excluded."""

    def __init__(self, leader: int) -> None:
        self._leader = leader
        self._hwm_kb: dict[tuple[int, str], int] = {}  # (pid, start time) -> latest VmHWM
        self.max_sum_rss_kb = 0

    def sample(self) -> None:
        total_rss = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self._leader:
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) != self._leader:  # session id
                    continue
                status = (entry / "status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            hwm = _status_kb(status, "VmHWM:")
            if hwm:  # zombies and kernel threads have none
                key = (int(entry.name), fields[19])
                self._hwm_kb[key] = max(self._hwm_kb.get(key, 0), hwm)
            total_rss += _status_kb(status, "VmRSS:")
        self.max_sum_rss_kb = max(self.max_sum_rss_kb, total_rss)

    @property
    def processes(self) -> int:
        return len(self._hwm_kb)

    @property
    def sum_hwm_mb(self) -> float | None:
        return sum(self._hwm_kb.values()) / 1024 if self._hwm_kb else None

    @property
    def max_rss_mb(self) -> float | None:
        return self.max_sum_rss_kb / 1024 if self._hwm_kb else None


def _stop_tool(proc: subprocess.Popen[bytes]) -> None:
    """Kill the tool's processes but not ``time`` itself, so it still reports; then the rest."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == proc.pid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == proc.pid:  # same process group as the session leader
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reap_orphans() -> None:
    """As PID 1 of the benchmark's PID namespace, collect processes orphaned by a kill."""
    if os.getpid() != 1:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def timed_run(
    argv: Sequence[str],
    *,
    cap: float,
    stdout: Path,
    stderr: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RunStats:
    """Run ``argv`` under ``/usr/bin/time -v``, killed (whole process group) past ``cap`` s."""
    time_file = stderr.with_suffix(".time")
    time_file.unlink(missing_ok=True)
    full = ["/usr/bin/time", "-v", "-o", str(time_file), *argv]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
        timed_out = False
        sampler = TreeSampler(proc.pid)
        try:
            while True:
                sampler.sample()
                left = started + max(cap, 0.1) - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(full, cap)
                try:  # returns as soon as the tool ends: the wall time stays exact
                    proc.wait(timeout=min(SAMPLE_S, left))
                    break
                except subprocess.TimeoutExpired:
                    continue
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_tool(proc)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.monotonic() - started
    _reap_orphans()
    cpu, rss = (None, None)
    if time_file.is_file():
        cpu, rss = _parse_time_v(time_file.read_text(errors="replace"))
    tail = stderr.read_text(errors="replace")[-800:].strip()
    code = None if timed_out else _tool_exit_code(proc.returncode, time_file)
    return RunStats(
        wall_s=wall,
        exit_code=code,
        timed_out=timed_out,
        cpu_s=cpu,
        rss_mb=rss,
        stderr_tail=tail,
        tree_hwm_mb=sampler.sum_hwm_mb,
        tree_rss_mb=sampler.max_rss_mb,
        processes=sampler.processes,
    )


def _tool_exit_code(time_code: int, time_file: Path) -> int:
    """The tool's own exit status (``time`` reports a signal death as 'Command terminated')."""
    if time_file.is_file():
        match = re.search(r"Exit status: (\d+)", time_file.read_text(errors="replace"))
        if match:
            return int(match.group(1))
    return time_code
