#!/usr/bin/env bash
# policyd vs postgrey, side by side on the same request stream (make bench).
#
#   bench/policyd/run.sh                      1, 8, 64 connections; postgrey, policyd+SQLite, policyd+Redis
#   REQS=5000 CONNS="1 8" bench/policyd/run.sh quick run
#   TARGETS="sqlite redis" RATE=5000       subset of targets; RATE = the fixed-rate latency run
#
# The stream is the peer's (../shared/peers/policy/policy_bench.py, seed 1: 50 % new
# triplets, 40 % repeats, 10 % whitelisted clients), written once to a file and replayed
# by one Go load generator (policyd-bench load) against every daemon, so the client is
# the same for all. Each measurement gets a fresh daemon and an empty database.
# postgrey runs exactly as in the peer's run script (Debian 1.37, --delay=300, the
# Debian whitelists). policyd runs greylisting with the same settings plus two rate
# limits checked on every request. Needs root (postgrey drops to its user).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${DOVETAIL_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PEER=$SHARED/peers/policy
REQS=${REQS:-20000}; CONNS=${CONNS:-"1 8 64"}; RATE=${RATE:-5000}
TARGETS=${TARGETS:-"postgrey sqlite redis"}
log() { printf '[policyd-bench %(%T)T] %s\n' -1 "$*" >&2; }

[[ -f $PEER/policy_bench.py ]] || { log "peer material not found at $PEER (set DOVETAIL_SHARED)"; exit 1; }
TMP=$(mktemp -d /tmp/pbench.XXXXXX); chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && { kill -TERM "$p"; wait "$p" 2>/dev/null || true; }
  done
  PIDS=()
}
trap 'cleanup; [[ ${KEEP:-0} = 1 ]] && log "kept $TMP" || rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 10000)); port_open "$p" || { echo "$p"; return; }; done; }
wait_port() { for _ in $(seq 200); do port_open "$1" && return 0; sleep 0.05; done; log "port $1 did not open"; return 1; }
cpu_busy() {  # % of all CPUs busy during the next $1 seconds
  local a b; read -r _ u n s i w q sq st _ </proc/stat; a=$((u+n+s+q+sq+st)); b=$((i+w))
  sleep "$1"; read -r _ u n s i w q sq st _ </proc/stat
  local busy=$((u+n+s+q+sq+st-a)) idle=$((i+w-b)); echo $(( busy + idle > 0 ? 100 * busy / (busy + idle) : 0 ))
}
quiet_wait() {  # wait until the box is <= QUIET_PCT % busy (at most QUIET_MAX s); prints the last reading
  local b t=0; while :; do b=$(cpu_busy 1); t=$((t+1)); (( b <= ${QUIET_PCT:-15} || t >= ${QUIET_MAX:-30} )) && break; done; echo "$b"
}

log "building policyd-bench"
(cd "$ROOT" && go build -o "$TMP/policyd-bench" ./bench/policyd)
log "writing the request stream ($REQS requests, seed 1)"
python3 - "$PEER" "$REQS" "$TMP/stream.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import policy_bench as p
open(sys.argv[3], "wb").write(b"".join(p.encode(t) for t in p.stream(int(sys.argv[2]), 1)))
PY

start_postgrey() {
  local d=$TMP/pg.$1; mkdir -p "$d"; chmod 755 "$d"; install -d -o postgrey -g postgrey -m 0700 "$d/db"
  postgrey --inet=127.0.0.1:"$PORT" --dbdir="$d/db" --delay=300 --user=postgrey --group=postgrey \
    --hostname=mx.example.com --whitelist-clients="$PEER/whitelist_clients" \
    --whitelist-recipients="$PEER/whitelist_recipients" >"$d/postgrey.log" 2>&1 &
  PIDS+=($!); wait_port "$PORT"
}
start_redis() {
  local d=$TMP/redis.$1; mkdir -p "$d"
  REDIS_PORT=$(free_port)
  printf 'bind 127.0.0.1\nport %s\ndaemonize no\ndir %s\nlogfile ""\nsave ""\nappendonly no\n' "$REDIS_PORT" "$d" >"$d/redis.conf"
  redis-server "$d/redis.conf" >"$d/redis.log" 2>&1 &
  PIDS+=($!); wait_port "$REDIS_PORT"
}
start_policyd() {  # $1 = sqlite|redis, $2 = tag
  local d=$TMP/pd.$2; mkdir -p "$d"
  local args=(-listen 127.0.0.1:"$PORT" -store "$1" -log "$d/decisions.log"
    -whitelist-clients "$PEER/whitelist_clients" -whitelist-recipients "$PEER/whitelist_recipients")
  case $1 in
    sqlite) args+=(-sqlite "$d/state.db") ;;
    redis) start_redis "$2"; args+=(-redis 127.0.0.1:"$REDIS_PORT") ;;
  esac
  "$TMP/policyd-bench" serve "${args[@]}" 2>"$d/stderr.log" &
  PIDS+=($!); wait_port "$PORT"
}

RAW=$TMP/results.jsonl
measure() {  # $1 target, $2 conns, [$3 rate]
  local target=$1 c=$2 rate=${3:-0} n=$REQS busy res
  PORT=$(free_port)
  case $target in
    postgrey) start_postgrey "$target.$c.$rate" ;;
    *) start_policyd "$target" "$target.$c.$rate" ;;
  esac
  sync; busy=$(quiet_wait)
  if (( rate > 0 )); then n=$(( REQS < rate * 4 ? REQS : rate * 4 )); fi
  res=$("$TMP/policyd-bench" load -addr 127.0.0.1:"$PORT" -stream "$TMP/stream.txt" -n "$n" -conns "$c" -rate "$rate" -target "$target")
  echo "{\"cpu_busy_before_pct\": $busy, \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", ${res#\{}" | tee -a "$RAW" >&2
  cleanup
}

log "nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(postgrey --version 2>&1 | head -1)"
for c in $CONNS; do
  for target in $TARGETS; do
    measure "$target" "$c"
  done
done
for target in $TARGETS; do
  [[ $target = postgrey ]] && continue
  measure "$target" 8 "$RATE"
done

python3 - "$RAW" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
pg = {r["connections"]: r["requests_per_s"] for r in rows if r["target"] == "postgrey" and not r.get("target_rate")}
print("| target | conns | rate | requests | requests/s | × postgrey | p50 ms | p99 ms | p99.9 ms | replies | CPU busy before / load |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    ratio = f'{r["requests_per_s"] / pg[r["connections"]]:.1f}×' if r["connections"] in pg and not r.get("target_rate") else "–"
    rate = f'{r["target_rate"]:.0f}/s' if r.get("target_rate") else "max"
    acts = ", ".join(f"{k} {v}" for k, v in sorted(r["actions"].items()))
    print(f'| {r["target"]} | {r["connections"]} | {rate} | {r["requests"]} | {r["requests_per_s"]:.0f} | {ratio} | '
          f'{r["p50_ms"]:.3f} | {r["p99_ms"]:.3f} | {r["p999_ms"]:.3f} | {acts} | {r["cpu_busy_before_pct"]}% / {r["load"]} |')
PY
