#!/usr/bin/env bash
# Device rollout benchmark: registrations and authorizations per second through HTTPS on
# loopback with device-sim, the satellite's own CPU time per request in each phase, and the
# satellite's peak memory.
#
#   cargo build --release --workspace --bins
#   tests/e2e/bench/device-rollout.sh 10000 100000      # device counts (default: 10000)
#
# Each count gets a fresh mock cloud and satellite (release build, manual clock off).
# Concurrency: DEVICE_SIM_CONCURRENCY (default 64).
set -euo pipefail
cd "$(dirname "$0")/../../.."
bin=target/release
for b in satellite mock-cloud device-sim; do
  [ -x "$bin/$b" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 2; }
done
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(10000)
conc=${DEVICE_SIM_CONCURRENCY:-64}
port=${BENCH_PORT:-18743}

# The satellite's own CPU time (user + system, all its threads) in clock ticks.
sat_ticks() { awk '{print $14 + $15}' "/proc/$sat_pid/stat"; }
hz=$(getconf CLK_TCK)
# measure N CMD...: runs a device-sim phase of N requests and prints its summary, then the
# satellite's CPU time per request, and the rate that much CPU allows on two cores given to the
# satellite alone (the simulator shares these two cores; on a site it is the devices).
measure() {
  local n=$1; shift
  local before after
  before=$(sat_ticks)
  "$@" | sed 's/^/   /'
  after=$(sat_ticks)
  awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN {
    us = t / hz * 1e6 / n
    printf "      satellite CPU: %.0f us per request (%d ticks) = %.0f/s on 2 cores of its own\n", us, t, 2e6 / us }'
}

for n in "${counts[@]}"; do
  work=$(mktemp -d)
  sat_pid=""
  trap '[ -n "$sat_pid" ] && kill "$sat_pid" 2>/dev/null; rm -rf "$work"' EXIT
  mc() { "$bin/mock-cloud" --data-dir "$work/cloud" "$@" >/dev/null; }
  sat() { "$bin/satellite" --data-dir "$work/sat" "$@"; }
  mc account create Bench
  mc va create Bench Site
  mc license add --va Site --tag regid.bench.license --name "Bench License" --count $((n / 2))
  sat register export --out "$work/req.zip" >/dev/null
  mc satellite authorize "$work/req.zip" --name bench --va Site --out "$work/auth.zip"
  sat register import "$work/auth.zip" \
    --cloud-ca-fingerprint "$("$bin/mock-cloud" --data-dir "$work/cloud" ca --fingerprint)" >/dev/null
  token=$(sat token create --va Site --days 30)
  # An operator account made here, in its own process: the server then skips the first-start
  # admin, whose argon2 hash (19 MiB for a moment) would otherwise be the peak RSS measured.
  sat user add bench-admin --role admin >/dev/null
  RUST_LOG=warn SATELLITE_SERVER_LISTEN=127.0.0.1:$port SATELLITE_CONSOLE_LISTEN=127.0.0.1:0 "$bin/satellite" --data-dir "$work/sat" serve >"$work/sat.log" 2>&1 &
  sat_pid=$!
  for _ in $(seq 100); do
    curl -fsk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $n devices (pool of $((n / 2)), concurrency $conc)"
  sim=(--satellite "https://localhost:$port" --ca "$work/sat/tls/server.crt.pem" --concurrency "$conc")
  ent=(--entitlement regid.bench.license:1)
  echo "   registration:"
  measure "$n" "$bin/device-sim" run "${sim[@]}" --token "$token" --devices "$n" --no-authorize \
    --state "$work/devices.json"
  echo "   first authorization of all $n:"
  measure "$n" "$bin/device-sim" authorize "${sim[@]}" "${ent[@]}" --state "$work/devices.json"
  echo "   second authorization round (renewal of all $n):"
  measure "$n" "$bin/device-sim" authorize "${sim[@]}" "${ent[@]}" --state "$work/devices.json"
  echo "   satellite peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$sat_pid/status)"
  echo "   database: $(du -h "$work/sat/satellite.db" | cut -f1)"
  kill "$sat_pid"; wait "$sat_pid" 2>/dev/null || true
  rm -rf "$work"; trap - EXIT
done
