#!/usr/bin/env bash
# Install the Debian packages a make target needs, only those missing. Usage: install-debs.sh test|bench
set -euo pipefail
case "${1:-}" in
  test)  packages=(openssl chromium prometheus pebble postgresql util-linux) ;;
  bench) packages=(nginx-light libnginx-mod-mail nmap nftables time util-linux iproute2) ;;
  *) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} — run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
