#!/usr/bin/env bash
# Scale benchmark (issue 22): a satellite holding N devices, measured with the real binaries
# (release build): the device API with N stored, a full and a 1% incremental sync by file
# while devices keep asking for their authorizations, a response of 300,000 license lines,
# the timers, memory and the longest write-lock hold. Prints one line per figure.
#
#   cargo build --release --workspace --bins
#   tests/bench/scale.sh 100000           # N (default 100000); from the project root
#
# How the N devices are made: by SQL, straight into the stopped satellite's database (one
# entitlement each, all authorized), because registering a million through the device API
# takes longer than the figures it serves; the device API is then measured with 10,000 more
# devices registered through it by device-sim, on top of the N. The machine's ceiling
# (../shared/perf/ceiling.sh, one P-256 signature and one verification per HTTPS request) is
# measured in the same run: CPU figures are given as a ratio of it (ceiling µs / satellite µs).
# Environment: SCALE_CEILING_SECONDS (default 10), DEVICE_SIM_CONCURRENCY (default 64),
# SCALE_KEEP=1 (keep the work directory, to look into), SCALE_PROFILE=1 (record each
# `sync import` with perf into the work directory: `perf report -i WORK/<phase>-import.perf`).
# Figures are computed against N = the devices stored; the sync phases carry N + 10,000.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release
for b in satellite mock-cloud device-sim; do
  [ -x "$bin/$b" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 2; }
done
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3 >/dev/null; }
n=${1:-100000}
more=10000
conc=${DEVICE_SIM_CONCURRENCY:-64}
tag=regid.bench.license
hz=$(getconf CLK_TCK)
work=$(mktemp -d)
sat_pid=""; loop_pid=""; cloud_pid=""
cleanup() {
  [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null
  [ -n "$sat_pid" ] && kill "$sat_pid" 2>/dev/null
  [ -n "$cloud_pid" ] && kill "$cloud_pid" 2>/dev/null
  wait 2>/dev/null || true
  if [ -n "${SCALE_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

figure() { printf '%-58s %s\n' "$1" "$2"; }
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.2f s", b - a }'; }
mc() { "$bin/mock-cloud" --data-dir "$work/cloud" "$@"; }
sat() { "$bin/satellite" --data-dir "$work/sat" "$@"; }
sat_ticks() { awk '{print $14 + $15}' "/proc/$sat_pid/stat"; }
# µs of the satellite's CPU per request over a phase of N requests.
cpu_us() { awk -v t=$(($2 - $1)) -v hz="$hz" -v n="$3" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }'; }
ratio() { awk -v c="$ceiling_us" -v s="$1" 'BEGIN { printf "%.0f%%", 100 * c / s }'; }
# Peak RSS of a command, in MiB, written to $work/rss.
timed_rss() { /usr/bin/time -f '%M' -o "$work/rss" "$@"; }
rss_mib() { awk '{ printf "%.1f MiB", $1 / 1024 }' "$work/rss"; }

echo "== scale benchmark: N = $n devices ($(nproc) cores)"
ceiling=$(../shared/perf/ceiling.sh "${SCALE_CEILING_SECONDS:-10}")
ceiling_us=$(echo "$ceiling" | grep -oE 'CPU [0-9]+ us' | grep -oE '[0-9]+')
figure "machine ceiling (ceiling.sh)" "$ceiling_us us per request ($(echo "$ceiling" | grep -oE '[0-9]+ req/s'))"

# A cloud with one pool big enough for everyone, a satellite registered by files.
mc account create Bench >/dev/null
mc va create Bench Site >/dev/null
mc license add --va Site --tag "$tag" --name "Bench License" --count $((n + 4 * more)) >/dev/null
sat register export --out "$work/req.zip" >/dev/null
mc satellite authorize "$work/req.zip" --name bench --va Site --out "$work/auth.zip" >/dev/null
sat register import "$work/auth.zip" --cloud-ca-fingerprint "$(mc ca --fingerprint)" >/dev/null
token=$(sat token create --va Site --days 30)
sat user add bench-admin --role admin >/dev/null

t=$(now_s)
now=$(date +%s)
sqlite3 "$work/sat/satellite.db" <<SQL
BEGIN;
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $n)
INSERT INTO product_instances (uuid, va_id, pid, sn, name, public_key, registered_at, last_contact_at)
SELECT printf('6f1c2a4e-0000-4000-8000-%012d', i), 1, 'ISR4431/K9', printf('FOC%08d', i),
       printf('router-%d.site.example', i), 'p256:00', $now, $now FROM k;
INSERT INTO license_usage (pi_id, tag, count, requested_at, status)
SELECT id, '$tag', 1, $now, 'AUTHORIZED' FROM product_instances;
INSERT OR REPLACE INTO pool_usage (va_id, tag, in_use, authorized) VALUES (1, '$tag', $n, $n);
COMMIT;
SQL
figure "setup: $n devices inserted by SQL" "$(since "$t"), database $(du -h "$work/sat/satellite.db" | cut -f1)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port=$(free_port); console=$(free_port); cloud=$(free_port)
# The cloud's HTTPS endpoint, for the network sync.
"$bin/mock-cloud" --data-dir "$work/cloud" serve --listen "127.0.0.1:$cloud" >"$work/cloud.log" 2>&1 &
cloud_pid=$!
for _ in $(seq 300); do curl -fsk "https://127.0.0.1:$cloud/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
api_token=$(sat user api-token create bench-admin)
RUST_LOG=warn,satellite::db::writer=info SATELLITE_SERVER_LISTEN=127.0.0.1:$port \
  SATELLITE_CONSOLE_LISTEN=127.0.0.1:$console SATELLITE_CLOUD_URL="https://localhost:$cloud" \
  "$bin/satellite" --data-dir "$work/sat" serve >"$work/sat.log" 2>&1 &
sat_pid=$!
for _ in $(seq 300); do curl -fsk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
sim=(--satellite "https://localhost:$port" --ca "$work/sat/tls/server.crt.pem" --concurrency "$conc")
ent=(--entitlement "$tag:1")
# summary FILE PHASE: "rate/s, p99 ms, errors" of a device-sim JSON summary.
summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["phases"][sys.argv[2]]
errs = sum(p["errors"].values())
print(f'{p["per_second"]:.0f}/s, p99 {p["latency_ms"]["p99"]:.0f} ms, {errs} errors')
PY
}

# The device API with N stored.
a=$(sat_ticks)
"$bin/device-sim" run "${sim[@]}" --token "$token" --devices "$more" --no-authorize \
  --state "$work/devices.json" --json >"$work/reg.json" || true
b=$(sat_ticks)
us=$(cpu_us "$a" "$b" "$more")
figure "registrations with N stored ($more, concurrency $conc)" "$(summary "$work/reg.json" register)"
figure "  satellite CPU per registration" "$us us = $(ratio "$us") of the ceiling"
a=$(sat_ticks)
"$bin/device-sim" authorize "${sim[@]}" "${ent[@]}" --state "$work/devices.json" --json \
  >"$work/auth.json" || true
b=$(sat_ticks)
us=$(cpu_us "$a" "$b" "$more")
figure "authorizations with N stored ($more)" "$(summary "$work/auth.json" authorize)"
figure "  satellite CPU per authorization" "$us us = $(ratio "$us") of the ceiling"

# Devices authorizing in a loop while a sync is made and applied from the CLI.
start_loop() {
  rm -f "$work/stop"; : >"$work/rounds"
  (
    i=0
    while [ ! -e "$work/stop" ] && [ $i -lt 10000 ]; do
      i=$((i + 1))
      "$bin/device-sim" authorize "${sim[@]}" "$@" --state "$work/devices.json" --json \
        >"$work/round-$i.json" 2>/dev/null || true
      echo "$work/round-$i.json" >>"$work/rounds"
    done
  ) &
  loop_pid=$!
}
# stop_loop LABEL: stops the loop, waits for its last round, prints what the devices got.
stop_loop() {
  touch "$work/stop"; wait "$loop_pid" 2>/dev/null || true; loop_pid=""
  figure "$1" "$(rounds)"
}
rounds() {
  python3 - "$work/rounds" <<'PY'
import json, sys
reqs = errs = 0; p99 = 0.0
for f in open(sys.argv[1]).read().split():
    try:
        p = json.load(open(f))["phases"]["authorize"]
    except Exception:
        continue
    reqs += p["requests"]; errs += sum(p["errors"].values()); p99 = max(p99, p["latency_ms"]["p99"])
print(f"{reqs} requests, {errs} errors, worst round p99 {p99:.0f} ms")
PY
}
# sync NAME [export flags]: a sync by file, each step timed; the CLI's longest lock hold.
sync_by_file() {
  local name=$1; shift
  local t
  t=$(now_s)
  timed_rss "$bin/satellite" --data-dir "$work/sat" sync export --out "$work/$name-req.zip" "$@" \
    >/dev/null 2>&1
  figure "$name: request written (sync export)" "$(since "$t"), $(du -h "$work/$name-req.zip" | cut -f1), peak RSS $(rss_mib)"
  t=$(now_s)
  timed_rss "$bin/mock-cloud" --data-dir "$work/cloud" sync process "$work/$name-req.zip" \
    --out "$work/$name-resp.zip" >/dev/null 2>&1
  figure "$name: mock cloud processes it" "$(since "$t"), peak RSS $(rss_mib)"
  t=$(now_s)
  local profile=()
  [ -n "${SCALE_PROFILE:-}" ] && profile=(perf record -F 499 -g -q -o "$work/${name%% *}-import.perf")
  timed_rss env RUST_LOG=warn,satellite::db::writer=info "${profile[@]}" "$bin/satellite" \
    --data-dir "$work/sat" sync import "$work/$name-resp.zip" >/dev/null 2>"$work/$name-import.log"
  figure "$name: response applied (sync import)" "$(since "$t"), peak RSS $(rss_mib)"
  figure "$name: longest write-lock hold of the import" "$(longest "$work/$name-import.log")"
}
# The longest "held the database lock" a log reports (those of 100 ms or more are logged).
longest() {
  local ms
  ms=$(grep -oE 'held_ms=[0-9]+' "$1" | cut -d= -f2 | sort -n | tail -1 || true)
  if [ -n "$ms" ]; then echo "$ms ms"; else echo "under 100 ms"; fi
}

start_loop "${ent[@]}"
sync_by_file "full sync" --full
stop_loop "full sync: devices meanwhile"

# A full network sync through the running server (the operator API's sync now): the
# server makes the request, posts it, and applies the answer through its writer.
start_loop "${ent[@]}"
t=$(now_s)
code=$(curl -sk -o "$work/sync-now.json" -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $api_token" "https://127.0.0.1:$console/api/v1/operator/sync/now?full=true")
figure "network sync (full, through the server): HTTP $code" "$(since "$t")"
stop_loop "network sync: devices meanwhile"

# 1%: the $more devices ask for two licenses each now.
"$bin/device-sim" authorize "${sim[@]}" --entitlement "$tag:2" --state "$work/devices.json" \
  --json >/dev/null || true
start_loop --entitlement "$tag:2"
sync_by_file "incremental sync ($more devices changed)"
stop_loop "incremental sync: devices meanwhile"

# The pool all N devices draw from grows by one at the cloud: its queue of N usage rows is
# recomputed in the apply.
mc license add --va Site --tag "$tag" --name "Bench License" --count 1 >/dev/null
start_loop "${ent[@]}"
sync_by_file "the pool of N devices changes"
stop_loop "the pool of N devices changes: devices meanwhile"

# A response of 300,000 license lines (by SQL at the cloud).
sqlite3 "$work/cloud/mock-cloud.db" <<SQL
BEGIN;
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 300000)
INSERT INTO licenses (va_id, tag, name, description, kind, quantity, created_at)
SELECT 1, printf('regid.bench.extra-%d', i % 1000), printf('Extra %d', i % 1000), '', 'perpetual', 1, $now FROM k;
COMMIT;
SQL
start_loop "${ent[@]}"
sync_by_file "300,000 license lines"
stop_loop "300,000 license lines: devices meanwhile"
# The same 300,000 lines again: the apply writes only what differs, here nothing.
sync_by_file "300,000 license lines, unchanged"

# The timers, from the CLI while the server runs (the server's scheduler runs the same).
t=$(now_s)
sat alert check >/dev/null
figure "timers tick (alert check) at N" "$(since "$t")"

figure "server: longest write-lock hold (all phases)" "$(longest "$work/sat.log")"
figure "server: peak RSS (all phases)" "$(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$sat_pid/status")"
figure "database at the end" "$(du -h "$work/sat/satellite.db" | cut -f1)"
