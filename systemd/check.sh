#!/usr/bin/env bash
# Checks the unit: `systemd-analyze verify` (with ExecStart pointed at a built binary, as
# verify wants an executable there) and `systemd-analyze security`, which must rate it at
# most 2.0. Usage: systemd/check.sh [PATH-TO-SATELLITE-BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/satellite}")"
[ -x "$bin" ] || { echo "check.sh: $bin is not an executable; build first" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/satellite#$bin#" systemd/satellite.service > "$tmp/satellite.service"
echo "-- systemd-analyze verify"
systemd-analyze verify "$tmp/satellite.service"
echo "-- systemd-analyze security (at most 2.0)"
systemd-analyze security --offline=true --threshold=20 "$tmp/satellite.service" | tail -1
