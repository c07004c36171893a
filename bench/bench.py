"""certscan benchmark: certscan vs nmap (and sslyze) on loopback labs of nginx endpoints.

Theory of operation
-------------------
``bench/run.sh`` calls this twice. ``prepare`` runs in the host namespace (it needs no network
except PyPI for the optional sslyze): it generates the lab once (cached under ``bench/out``) and
tries to install sslyze into its own virtualenv there. ``run`` runs as PID 1 of a fresh network
and PID namespace (``unshare --net --pid --fork --kill-child``), so everything it starts, nginx
included, dies with it and no packet can leave loopback. ``run`` checks that namespace before it
brings ``lo`` up, refuses any target outside 127.0.0.0/8, installs the nftables counters and the
dead-range drop, starts nginx, then for each scenario runs the tools in turn (the order rotates
each round), resetting the SYN counters before each invocation and killing any invocation past its
wall-clock cap. A global time budget shortens caps and skips the rounds that no longer fit.
Medians go to a Markdown table printed and written to ``bench/out/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import big_lab
import goals
import identical
import mail_lab
import measure
import nginx_lab
import ports_lab
import report
import startup
import tools
import veth

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "out"
MIN_CAP_S = 10.0
#: Start-up (6) before the 10,000 lab (5), which gets what is left of the time budget.
DEFAULT_SCENARIOS = "1,2,3,4,9,8,5,6,7,5v,6v"
BIG_LAB_LINE = (
    "a second nginx (worker_connections 18000, worker_rlimit_nofile 20000) serving 10,000 "
    "endpoints 127.8.0.1–127.8.39.16:443, 5,000 ECDSA P-256 and 5,000 RSA-2048 leaves, each sent "
    "with its intermediate; swept as 127.8.0.0/19 + 127.8.32.0/21 (10,240 addresses, 240 closed)"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=("prepare", "run"))
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and scenario (3)")
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, run in this order: {','.join(tools.SCENARIOS)} "
        f"({DEFAULT_SCENARIOS})",
    )
    parser.add_argument(
        "--tools", default=",".join(tools.TOOLS), help=f"{','.join(tools.TOOLS)} (all)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cache and results dir")
    parser.add_argument(
        "--budget", type=float, default=780.0, help="seconds for all measured runs (780)"
    )
    parser.add_argument(
        "--certscan-args",
        default=os.environ.get("CERTSCAN_ARGS", ""),
        help="extra arguments for every certscan sweep (also $CERTSCAN_ARGS)",
    )
    parser.add_argument("--retry-sslyze", action="store_true", help="retry a failed sslyze install")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.tools = [t for t in args.tools.split(",") if t]
    for s in args.scenarios:
        if s not in tools.SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    for t in args.tools:
        if t not in tools.TOOLS:
            parser.error(f"unknown tool {t!r}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.out = args.out.resolve()
    return args


# -- preparation (host namespace) ------------------------------------------------------------


def sslyze_bin(out: Path) -> Path:
    return out / "sslyze-venv" / "bin" / "sslyze"


def ensure_sslyze(out: Path, retry: bool) -> None:
    """Install sslyze into ``out/sslyze-venv`` once; remember a failure unless ``retry``."""
    failed = out / "sslyze.unavailable"
    if sslyze_bin(out).is_file() or (failed.is_file() and not retry):
        return
    venv = out / "sslyze-venv"
    print("bench: installing sslyze into its own virtualenv (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "sslyze"],
            check=True,
            timeout=180,
            stdout=subprocess.DEVNULL,
            stderr=(out / "sslyze-install.log").open("wb"),
        )
        failed.unlink(missing_ok=True)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        failed.write_text(f"{exc}\n")
        print(f"bench: sslyze not installed ({exc}); see {out / 'sslyze-install.log'}")


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def prepare(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    nginx_lab.build_lab(args.out)
    if "4" in args.scenarios:
        try:
            mail_lab.build_mail_lab(args.out, nginx_bin())
        except nginx_lab.LabError as exc:
            print(f"bench: scenario 4 will not run: {exc}", flush=True)
    if "8" in args.scenarios or "8p" in args.scenarios:
        big_lab.build_big_lab(args.out)
    if "sslyze" in args.tools and "1" in args.scenarios:
        ensure_sslyze(args.out, args.retry_sslyze)
    return 0


# -- measurement (private namespace) ---------------------------------------------------------


def certscan_command() -> list[str] | None:
    """``$CERTSCAN_BIN`` (split like a shell would), else the project's venv, else the PATH."""
    configured = os.environ.get("CERTSCAN_BIN", "").strip()
    if configured:
        return shlex.split(configured)
    local = REPO / ".venv" / "bin" / "certscan"
    if os.access(local, os.X_OK):
        return [str(local)]
    found = shutil.which("certscan")
    return [found] if found else None


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    line = text[0].strip() if text else ""
    return line if done.returncode == 0 else f"unavailable (exit {done.returncode}: {line[:120]})"


def machine_facts() -> dict[str, str]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = platform.system()
    os_release = Path("/etc/os-release")
    if os_release.is_file():
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "kernel": platform.release(),
        "os": os_name,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
    }


def bring_up_loopback() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    state = subprocess.run(
        ["ip", "-o", "link", "show", "lo"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    if ",UP" not in state:
        raise measure.BenchError(f"lo is not up: {state.strip()}")


def budget_seconds(requested: float) -> float:
    """``requested``, shortened to end 30 s before ``run.sh``'s overall deadline if it has one."""
    deadline = os.environ.get("BENCH_DEADLINE", "")
    if deadline.isdigit():
        return max(0.0, min(requested, int(deadline) - time.time() - 30))
    return requested


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    load_before, jiffies_before = measure.load_average(), measure.cpu_jiffies()
    measure.assert_private_namespace()
    scenarios = [tools.SCENARIOS[k] for k in args.scenarios]
    for scenario in scenarios:
        if scenario.veth:  # checked again against the routes once the veth pair is up
            continue
        measure.assert_loopback(*(n for t in scenario.targets for n in scenario.networks(t)))
        measure.assert_loopback(
            *(part.split("-")[0] for _, daddr in scenario.counters for part in daddr.split(","))
        )
    measure.assert_loopback(
        *(part.split("-")[0] for daddr, _ in tools.EXTRA_DROPS for part in daddr.split(",")),
        tools.DEAD_RANGE,
        str(nginx_lab.LAB_NETWORK),
        str(mail_lab.MAIL_NETWORK),
        str(big_lab.BIG_NETWORK),
        "127.0.0.1",
    )
    bring_up_loopback()

    certscan = certscan_command()
    certscan_extra = shlex.split(args.certscan_args)
    versions = {"nmap": _first_line(["nmap", "--version"]).split(" ( ")[0]}
    versions["nginx"] = _first_line(["nginx", "-v"])
    unavailable: dict[str, str] = {}
    if any(t in tools.CERTSCAN_VARIANTS for t in args.tools):
        versions["certscan"] = (
            _first_line([*certscan, "--version"]) if certscan else "unavailable (not found)"
        )
        if versions["certscan"].startswith("unavailable"):
            raise measure.BenchError(
                f"certscan {versions['certscan']}: set CERTSCAN_BIN to its command, "
                "or choose other tools with --tools nmap,sslyze"
            )
    sslyze = sslyze_bin(args.out)
    if "sslyze" in args.tools:
        if sslyze.is_file():
            python = str(sslyze.parent / "python")
            meta = "import importlib.metadata as m; print('sslyze', m.version('sslyze'))"
            versions["sslyze"] = _first_line([python, "-c", meta])
        else:
            versions["sslyze"] = "not installed"
            unavailable["sslyze"] = "not installed"

    peer_host: veth.PeerHost | None = None
    if any(s.veth for s in scenarios):
        peer_host = veth.PeerHost()
        peer_host.start()
        tools.PEER_MAC["mac"] = peer_host.mac
        for scenario in scenarios:
            if scenario.veth:
                veth.assert_inside(*(n for t in scenario.targets for n in scenario.networks(t)))
                veth.assert_inside(*(d for _, d in scenario.counters))
    for peer in ("masscan", "zmap"):
        if peer in args.tools:
            found = shutil.which(peer)
            line = _first_line([peer, "--version"]) if found else "not installed"
            versions[peer] = next((w for w in line.split("\n") if w.strip()), line)[:60]
            if not found:
                unavailable[peer] = "not installed"
    lab = nginx_lab.build_lab(args.out)
    by_address = lab.by_address
    broken: dict[str, str] = {}  # scenario key -> why it did not run
    mail: nginx_lab.Lab | None = None
    if any(s.key == "4" for s in scenarios):
        try:
            mail = mail_lab.build_mail_lab(args.out, nginx_bin())
        except nginx_lab.LabError as exc:
            broken["4"] = f"not run: no nginx mail module ({mail_lab.INSTALL_HINT})"
            print(f"bench: scenario 4 will not run: {exc}", flush=True)
    if mail is not None:
        by_address = {**by_address, **mail.by_address}
    wants_big = any(s.key in ("8", "8p") for s in scenarios)
    big = big_lab.build_big_lab(args.out) if wants_big else None
    if big is not None:
        by_address = {**by_address, **big.by_address}
    ports_nginx = None
    if big is not None and any(s.key == "8p" for s in scenarios):
        by_address = {**by_address, **ports_lab.endpoints(big)}
        ports_nginx = ports_lab.PortsNginx(big, nginx_bin(), args.out)
    firewall = measure.Firewall(
        [
            measure.Counter(name=n, daddr=d, dports=s.ports)
            for s in scenarios
            for n, d in s.counters
        ],
        drop=tools.DEAD_RANGE,
        drops=tools.EXTRA_DROPS,
    )
    firewall.install()
    runs_root = args.out / "runs"
    shutil.rmtree(runs_root, ignore_errors=True)
    deadline = time.monotonic() + budget_seconds(args.budget)
    records: list[report.RunRecord] = []
    needs_lab = any(s.key in ("1", "4", "5", "7") for s in scenarios)
    nginx = nginx_lab.Nginx(lab, nginx_bin(), args.out)
    mail_nginx = mail_lab.MailNginx(mail, nginx_bin(), args.out) if mail is not None else None
    big_nginx = big_lab.BigNginx(big, nginx_bin(), args.out) if big is not None else None
    if needs_lab:
        print("bench: starting nginx with 1,000 TLS endpoints ...", flush=True)
        nginx.start()
    try:
        for scenario in scenarios:
            chosen = [
                t
                for t in scenario.tools
                if t in args.tools and t not in unavailable and _runnable(t, scenario)
            ]
            print(f"\n== scenario {scenario.key}: {scenario.title}", flush=True)
            if scenario.key in broken:
                print(f"  skipped: {broken[scenario.key]}", flush=True)
                continue
            # -- issue 14: start-up rows (6), and the 10,000 lab's own nginx (5) --
            if scenario.key == "9":
                records += startup.run_rows(
                    chosen_tools=args.tools,
                    runs=args.runs,
                    certscan=certscan or [],
                    runs_root=runs_root,
                    deadline=deadline,
                )
                continue
            if scenario.key == "8" and big_nginx is not None:
                print("bench: starting nginx with 10,000 TLS endpoints ...", flush=True)
                try:
                    big_nginx.start()
                except RuntimeError as exc:
                    print(f"bench: scenario 8 skipped: {exc}", flush=True)
                    broken[scenario.key] = f"10,000 lab down: {str(exc)[:100]}"
                    continue
            if scenario.key == "8p" and ports_nginx is not None:
                print("bench: starting 4 nginx with 65,536 TLS endpoints ...", flush=True)
                try:
                    ports_nginx.start()
                except RuntimeError as exc:
                    print(f"bench: scenario 8p skipped: {exc}", flush=True)
                    broken[scenario.key] = f"ports lab down: {str(exc)[:100]}"
                    continue
            if scenario.key == "4" and mail_nginx is not None:
                # Started only now so that scenarios 1-3 run beside the same processes as before.
                print("bench: starting nginx's mail proxy with 160 STARTTLS endpoints ...")
                try:
                    mail_nginx.start()
                except RuntimeError as exc:
                    print(f"bench: scenario 4 skipped: {exc}", flush=True)
                    broken[scenario.key] = f"mail lab down: {str(exc)[:100]}"
                    continue
            for round_no in range(1, args.runs + 1):
                shift = (round_no - 1) % max(len(chosen), 1)
                for tool in chosen[shift:] + chosen[:shift]:
                    record = one_run(
                        scenario,
                        tool,
                        round_no,
                        run_dir=runs_root / f"s{scenario.key}-{tool}-r{round_no}",
                        deadline=deadline,
                        firewall=firewall,
                        certscan=certscan or [],
                        certscan_extra=certscan_extra,
                        sslyze=str(sslyze),
                        lab=by_address,
                    )
                    records.append(record)
            if scenario.key == "8" and big_nginx is not None:
                big_nginx.stop()
            if scenario.key == "8p" and ports_nginx is not None:
                ports_nginx.stop()
    finally:
        nginx.stop()
        if big_nginx is not None:
            big_nginx.stop()
        if ports_nginx is not None:
            ports_nginx.stop()
        if mail_nginx is not None:
            mail_nginx.stop()
        if peer_host is not None:
            peer_host.stop()
    summaries = []
    start_results = startup.results([r for r in records if r.scenario == "9"])
    for scenario in scenarios:
        if scenario.key == "9":  # its own table (startup.table)
            continue
        for tool in scenario.tools:
            if tool not in args.tools:
                continue
            reason = unavailable.get(tool) or broken.get(scenario.key)
            if not reason and not _runnable(tool, scenario):
                reason = (
                    tools.NO_ETHERNET if not scenario.veth else "zmap 2.1 scans one port per run"
                )
            if reason:
                summaries.append(
                    report.Summary(
                        scenario=scenario, tool=tool, target=scenario.targets[tool], runs=0,
                        timeouts=0, failures=0, wall_s=None, eps=None, cpu_s=None, rss_mb=None,
                        syns=None, found="—", unavailable=reason,
                    )
                )  # fmt: skip
                continue
            mine = [r for r in records if r.scenario == scenario.key and r.tool == tool]
            summaries.append(report.summarise(scenario, tool, mine))
    mail_line = mail_lab.describe(mail) if mail is not None else ""
    busy, total = (a - b for a, b in zip(measure.cpu_jiffies(), jiffies_before, strict=True))
    tool_cpu = sum(r.stats.cpu_s or 0.0 for r in records if r.stats is not None)
    load_line = (
        f"machine load: load average {load_before} before, {measure.load_average()} after; "
        f"all CPUs {100 * busy / max(total, 1):.0f}% busy while measuring (the tools' own CPU: "
        f"{tool_cpu:.0f} s of {total / os.sysconf('SC_CLK_TCK'):.0f} CPU-seconds available; "
        "the rest is nginx, this script and any other process on the machine)"
    )
    print(f"bench: {load_line}", flush=True)
    write_results(
        args,
        summaries,
        records,
        versions,
        time.monotonic() - started,
        mail_line,
        load_line,
        start_results=start_results,
    )
    return 0


def _runnable(tool: str, scenario: tools.Scenario) -> bool:
    """masscan and zmap need the veth pair; zmap one port."""
    if tool not in ("masscan", "zmap"):
        return True
    return scenario.veth and (tool == "masscan" or "," not in scenario.ports)


def one_run(
    scenario: tools.Scenario,
    tool: str,
    round_no: int,
    *,
    run_dir: Path,
    deadline: float,
    firewall: measure.Firewall,
    certscan: list[str],
    certscan_extra: list[str],
    sslyze: str,
    lab: dict[str, nginx_lab.Endpoint],
) -> report.RunRecord:
    divisor_name = scenario.counters[0][0]
    divisor = scenario.per_endpoint.get(divisor_name, scenario.addresses(tool))

    def record(
        stats: measure.RunStats | None,
        found: tools.Found | None,
        syns: dict[str, int],
        note: str,
        argv: str = "",
        same: str = "",
    ) -> report.RunRecord:
        return report.RunRecord(
            scenario=scenario.key,
            tool=tool,
            run=round_no,
            target=scenario.targets[tool],
            addresses=scenario.addresses(tool),
            syn_divisor=divisor,
            stats=stats,
            found=found,
            syns=syns,
            note=note,
            argv=argv,
            identical=same,
        )

    remaining = deadline - time.monotonic()
    if remaining < MIN_CAP_S:
        print(f"  run {round_no} {tool}: skipped, time budget used up", flush=True)
        return record(None, None, {}, "budget used up")
    cap = min(scenario.cap_s[tool], remaining)
    run_dir.mkdir(parents=True, exist_ok=True)
    argv, output = tools.command(
        tool,
        scenario,
        run_dir=run_dir,
        certscan=certscan,
        certscan_extra=certscan_extra,
        sslyze=sslyze,
    )
    command_line = shlex.join(argv)
    (run_dir / "command").write_text(command_line + "\n")
    firewall.reset()
    stats = measure.timed_run(
        argv, cap=cap, stdout=run_dir / "stdout", stderr=run_dir / "stderr", cwd=run_dir
    )
    counts = firewall.read()
    syns = {name: counts.get(name, 0) for name, _ in scenario.counters}
    found = tools.count_found(tool, output, run_dir, lab) if scenario.live else None
    note = f"capped at {cap:.0f} s" if stats.timed_out else ""
    if not stats.timed_out and stats.exit_code != 0:
        note = f"exit {stats.exit_code}: {stats.stderr_tail.splitlines()[-1:]!s}"[:160]
    shown = command_line.replace(str(run_dir), "$RUN").replace(str(REPO) + "/", "")
    same = ""
    if found is not None and tool in tools.CERTSCAN_VARIANTS and not stats.timed_out:
        same = identical.check(
            expected=identical.expected_endpoints(lab, scenario.networks(tool), scenario.ports),
            with_cert=found.with_cert,
            matched=found.matched,
            full_chain=found.full_chain,
            garbled=found.garbled,
            db=run_dir / "inventory.db",
        )
    done = record(stats, found, syns, note, shown, same)
    print(
        f"  run {round_no} {tool:8s} {stats.wall_s:7.2f} s"
        f"  exit {'cap' if stats.timed_out else stats.exit_code}"
        f"  cpu {report.fmt(stats.cpu_s)} s  rss {report.fmt(stats.rss_mb, 1)} MB"
        f" (Σ {report.fmt(stats.tree_hwm_mb, 1)} MB, {stats.processes} proc)"
        f"  leaves {found.matched if found else '—'}"
        f"  chains {found.full_chain if found and found.full_chain is not None else '—'}"
        f"{f'  (STARTTLS {found.starttls})' if found and scenario.live_starttls else ''}"
        f"  SYNs/endpoint {report.fmt(done.syns_per_endpoint)}"
        f"{f'  {same}' if same else ''}",
        flush=True,
    )
    if note:
        print(f"    note: {note}", flush=True)
    return done


def write_results(
    args: argparse.Namespace,
    summaries: list[report.Summary],
    records: list[report.RunRecord],
    versions: dict[str, str],
    elapsed: float,
    mail_line: str = "",
    load_line: str = "",
    *,
    start_results: list[startup.Result] | None = None,
) -> None:
    facts = machine_facts()
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["bench/bench.py", *sys.argv[1:]])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = report.table(summaries)
    ratio_lines = report.ratios(summaries)
    start_table = startup.table(start_results) if start_results else ""
    goal_lines = goals.lines(goals.judge(summaries, start_results or []))
    lines = [
        "# certscan benchmark results",
        "",
        f"- command: `{command}`",
        f"- date: {now} (measuring took {elapsed / 60:.1f} min)",
        f"- machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['memory']} RAM, "
        f"Linux {facts['kernel']}, {facts['os']}, Python {facts['python']}",
        "- versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()),
        f"- runs per tool and scenario: {args.runs} (medians; tools alternate, order rotating)",
        "- lab: nginx (worker_processes auto) serving 1,000 endpoints 127.1.0.1–127.1.3.232:443, "
        "500 ECDSA P-256 and 500 RSA-2048 leaves, each sent with its intermediate; the other 24 "
        "addresses of the /22 are closed",
        *([f"- mail lab (scenario 4): {mail_line}"] if mail_line else []),
        *([f"- 10,000 lab (scenario 8): {BIG_LAB_LINE}"] if "8" in args.scenarios else []),
        *([f"- {load_line}"] if load_line else []),
        "",
        table if summaries else "",
    ]
    lines += [f"- {line}" for line in ratio_lines]
    if start_table:
        lines += ["", start_table]
    if goal_lines:
        lines += ["", "## Goals (issue 14)", "", *[f"- {line}" for line in goal_lines]]
    lines += [
        "",
        "Endpoints/s = address:port targets swept (addresses in the tool's target ranges × "
        "ports) ÷ median wall time. Certificates "
        "found = leaves whose SHA-256 matches the lab's for that address and port (chains: "
        "followed by "
        "the right intermediate). certscan-w2 is the same certscan command plus `--workers 2` "
        "(two spawned worker processes, one shard each, beside the parent); its speed-up = "
        "certscan's median wall time ÷ certscan-w2's, both measured in this benchmark. CPU s = "
        "user + system of the tool's processes (children included once reaped) from "
        "`/usr/bin/time -v`; Peak RSS (largest process) is `time -v`'s maximum resident set, "
        "that of the largest single process; Σ peak RSS (all processes) is the sum over every "
        "process of the tool's session of its own peak RSS (`VmHWM`, read from /proc every "
        "50 ms while it runs; shared pages count once per process). SYNs/endpoint = SYNs "
        "counted by an nftables rule in the "
        "namespace (scenario 1: to the 1,000 live addresses ÷ 1,000; scenarios 2 and 3: to the "
        "range ÷ addresses swept, SYN retransmissions included). Scenario 3 drops SYNs to "
        "127.3.0.0/16 in the namespace's prerouting hook; nmap sweeps only the /24 slice, "
        f"with `--host-timeout 30s` and a {tools.SCENARIOS['3'].cap_s['nmap']:.0f} s wall cap. "
        "Scenario 4 sweeps 127.1.0.0/22 and 127.4.0.0/24 on ports "
        f"{tools.MIXED_PORTS} (1,280 addresses × 5 ports = 6,400 targets, STARTTLS by port "
        "number in both tools): 1,000 HTTPS and 160 STARTTLS endpoints answer, the other 5,240 "
        "targets are refused; its SYNs/endpoint is SYNs to all 6,400 targets ÷ 6,400. Compare "
        "scenario 1's certscan row with the same row before a change to judge HTTPS throughput. "
        "CPU ms/endpoint = median CPU s ÷ the lab's live endpoints (targets swept where none "
        "answers). Same as manifest: the --json lines and the SQLite inventory hold exactly the "
        "lab's leaf + intermediate for every live endpoint and nothing else (bench/identical.py).",
        "",
        "## Commands",
        "",
        "`$RUN` is each run's own directory under `bench/out/runs` (a fresh SQLite file each).",
        "",
        report.commands(records),
        "## Every run",
        "",
        report.runs_table(records),
    ]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    raw = [
        {**asdict(r), "syns": dict(r.syns), "syns_per_endpoint": r.syns_per_endpoint}
        for r in records
    ]
    (args.out / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    if summaries:
        print("\n" + table)
    for line in ratio_lines:
        print(line)
    if start_table:
        print("\n" + start_table)
    if goal_lines:
        print("goals (issue 14):")
        for line in goal_lines:
            print(f"  {line}")
    print(f"\nbench: results written to {args.out / 'results.md'}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        return prepare(args) if args.phase == "prepare" else run(args)
    except (measure.BenchError, nginx_lab.LabError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
