#!/usr/bin/env bash
# certscan benchmark entry point (`make bench`). Needs root, nginx, nmap, nftables, GNU time,
# iproute2 and util-linux's unshare. Every packet stays on loopback inside a private network
# namespace created here; see bench/README.md. Arguments go to bench/bench.py, e.g.
#   bench/run.sh --runs 5 --scenarios 1 --tools certscan,nmap
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
apt_hint="apt-get install -y nginx-light libnginx-mod-mail nmap nftables time iproute2 util-linux"
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for tool in nginx nmap nft ip unshare; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x /usr/bin/time ] || missing+=("/usr/bin/time")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench: missing ${missing[*]}; install them with:" >&2
    echo "    sudo $apt_hint" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench: needs root for its private network namespace and nftables (try: sudo $0)" >&2
    exit 2
fi

python="${BENCH_PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
if ! "$python" -c "import cryptography" >/dev/null 2>&1; then
    echo "bench: $python cannot import cryptography; install certscan first (make demo)" \
        "or set BENCH_PYTHON to a Python that has it" >&2
    exit 2
fi
# The certscan under test: $CERTSCAN_BIN, else .venv/bin/certscan, else certscan on the PATH.
if [ -z "${CERTSCAN_BIN:-}" ] && [ ! -x "$repo/.venv/bin/certscan" ]; then
    venv_bin="$(dirname "$python")/certscan"
    if [ -x "$venv_bin" ]; then export CERTSCAN_BIN="$venv_bin"; fi
fi

cd "$repo"
# certscan's own modules are compiled to bytecode first, as an installed certscan's are: with
# PYTHONDONTWRITEBYTECODE=1 in the environment, every start would otherwise compile about 110
# modules from source, and the start-up rows would time the compiler.
"$python" -m compileall -q scanner reports exporters >/dev/null || true
# The whole benchmark ends within 14 minutes: bench.py fits its runs into what is left, and the
# measuring phase is killed outright (with everything in its namespace) past the deadline.
export BENCH_DEADLINE="$(( $(date +%s) + 840 ))"

# Host namespace: build (or reuse) the lab and try to install sslyze. Nothing is sent here.
"$python" bench/bench.py prepare "$@"

# Private network + PID namespace: only lo exists there, and when bench.py (its PID 1) exits,
# every process it started is killed with it.
left="$(( BENCH_DEADLINE - $(date +%s) ))"
if [ "$left" -lt 60 ]; then
    echo "bench: preparation used up the time budget" >&2
    exit 3
fi
BENCH_HOST_NETNS="$(readlink /proc/self/ns/net)" \
BENCH_COMMAND="bench/run.sh${*:+ $*}" \
    exec timeout --foreground --signal=KILL "$left" \
    unshare --net --pid --fork --kill-child --mount-proc \
    "$python" bench/bench.py run "$@"
