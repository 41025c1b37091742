#!/usr/bin/env bash
# policyd vs postgrey, side by side on the same request stream (make bench).
#
#   bench/policyd/run.sh                      1, 8, 64 connections; postgrey, policyd+SQLite, policyd+Redis
#   REQS=5000 CONNS="1 8" RUNS=1 bench/policyd/run.sh   quick run
#   TARGETS="sqlite redis" RATE=5000       subset of targets; RATE = the fixed-rate latency run
#                                          (targets: postgrey sqlite redis null null-netpoll null-spin)
#   CONNS="" TARGETS=sqlite QUIET_MAX=120  only the fixed-rate run, waiting up to 2 min for a quiet box
#   RAW_OUT=file.jsonl                     also keep the raw per-run lines
#
# RUNS rounds (default 3), each measuring every target at every connection count
# in turn (interleaved, so contention from other jobs on the box hits all targets
# alike); the table shows medians. Besides wall-clock requests/s, each line
# records the daemon's own CPU time (process tree: postgrey; policyd-bench, plus
# redis-server for the Redis backend) and the CPU the rest of the box used during
# the run, so a figure measured under someone else's load can be judged:
# requests per daemon CPU-second is the contention-robust throughput.
#
# The stream is the peer's (../shared/peers/policy/policy_bench.py, seed 1: 50 % new
# triplets, 40 % repeats, 10 % whitelisted clients), written once to a file and replayed
# by one Go load generator (policyd-bench load) against every daemon, so the client is
# the same for all. Each measurement gets a fresh daemon and an empty database.
# postgrey runs exactly as in the peer's run script (Debian 1.37, --delay=300, the
# Debian whitelists). policyd runs greylisting with the same settings plus two rate
# limits checked on every request. Needs root (postgrey drops to its user).
#
# null, null-netpoll and null-spin are the box's ceiling, not contenders: a server that does
# no work at all (policyd-bench null: reads to the blank line, answers DUNNO,
# one OS thread per connection), sleeping in read(2) like any server, or
# polling the socket with a CPU per connection (-spin). At one connection a
# request's time is mostly the wake-ups of the server and of the client, and
# these rows show how much of the × postgrey figure this box allows there.
# null-netpoll is the same do-nothing server written as policyd is (a goroutine
# per connection on Go's netpoller). null-spin runs at one connection only: two
# CPUs cannot spin for eight.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../lib.sh"
SHARED=${DOVETAIL_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PEER=$SHARED/peers/policy
REQS=${REQS:-20000}; CONNS=${CONNS-"1 8 64"}; RATE=${RATE:-5000}; RUNS=${RUNS:-3}
TARGETS=${TARGETS:-"postgrey sqlite redis null null-netpoll null-spin"}
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

daemons_cs() { local p t=0 c; for p in "${PIDS[@]:-}"; do [[ -n $p ]] || continue; c=$(tree_cs "$p"); t=$((t + ${c:-0})); done; echo "$t"; }

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
  local d=$TMP/pg.$1; rm -rf "$d"; mkdir -p "$d"; chmod 755 "$d"; install -d -o postgrey -g postgrey -m 0700 "$d/db"
  postgrey --inet=127.0.0.1:"$PORT" --dbdir="$d/db" --delay=300 --user=postgrey --group=postgrey \
    --hostname=mx.example.com --whitelist-clients="$PEER/whitelist_clients" \
    --whitelist-recipients="$PEER/whitelist_recipients" >"$d/postgrey.log" 2>&1 &
  PIDS+=($!); wait_port "$PORT"
}
start_redis() {
  local d=$TMP/redis.$1; rm -rf "$d"; mkdir -p "$d"
  REDIS_PORT=$(free_port)
  printf 'bind 127.0.0.1\nport %s\ndaemonize no\ndir %s\nlogfile ""\nsave ""\nappendonly no\n' "$REDIS_PORT" "$d" >"$d/redis.conf"
  redis-server "$d/redis.conf" >"$d/redis.log" 2>&1 &
  PIDS+=($!); wait_port "$REDIS_PORT"
}
start_policyd() {  # $1 = sqlite|redis, $2 = tag
  local d=$TMP/pd.$2; rm -rf "$d"; mkdir -p "$d"
  local args=(-listen 127.0.0.1:"$PORT" -store "$1" -log "$d/decisions.log"
    -whitelist-clients "$PEER/whitelist_clients" -whitelist-recipients "$PEER/whitelist_recipients")
  case $1 in
    sqlite) args+=(-sqlite "$d/state.db") ;;
    redis) start_redis "$2"; args+=(-redis 127.0.0.1:"$REDIS_PORT") ;;
  esac
  "$TMP/policyd-bench" serve "${args[@]}" 2>"$d/stderr.log" &
  PIDS+=($!); wait_port "$PORT"
}

start_null() {  # $1 = null|null-netpoll|null-spin
  local mode=()
  case $1 in null-spin) mode=(-spin) ;; null-netpoll) mode=(-netpoll) ;; esac
  "$TMP/policyd-bench" null -listen 127.0.0.1:"$PORT" "${mode[@]}" &
  PIDS+=($!); wait_port "$PORT"
}

RAW=$TMP/results.jsonl
measure() {  # $1 target, $2 conns, [$3 rate]
  local target=$1 c=$2 rate=${3:-0} n=$REQS busy res
  PORT=$(free_port)
  case $target in
    postgrey) start_postgrey "$target.$c.$rate.$RUN" ;;
    null*) start_null "$target" ;;
    *) start_policyd "$target" "$target.$c.$rate.$RUN" ;;
  esac
  sync; busy=$(quiet_wait)
  if (( rate > 0 )); then n=$(( REQS < rate * 4 ? REQS : rate * 4 )); fi
  local d0 b0 w0 d1 b1 w1 load
  load=$(cut -d' ' -f1 /proc/loadavg); d0=$(daemons_cs); b0=$(box_cs); w0=$EPOCHREALTIME
  res=$("$TMP/policyd-bench" load -addr 127.0.0.1:"$PORT" -stream "$TMP/stream.txt" -n "$n" -conns "$c" -rate "$rate" -target "$target")
  w1=$EPOCHREALTIME; b1=$(box_cs); d1=$(daemons_cs)
  # Box CPU not spent by the daemons or the load generator = other people's work.
  local acct
  acct=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); d, b, n = int(sys.argv[2]) / 100, int(sys.argv[3]) / 100, int(sys.argv[6])
w = float(sys.argv[5]) - float(sys.argv[4])
other = max(0.0, b - d - r["client_cpu_s"]) / (w * n) * 100
print(json.dumps({"daemon_cpu_s": round(d, 2), "requests_per_cpu_s": round(r["requests"] / d) if d else 0, "other_cpu_pct": round(other)})[1:-1])
' "$res" $((d1 - d0)) $((b1 - b0)) "$w0" "$w1" "$(nproc)")
  echo "{\"run\": $RUN, \"cpu_busy_before_pct\": $busy, \"load\": \"$load\", $acct, ${res#\{}" | tee -a "$RAW" >&2
  cleanup
}

log "nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(postgrey --version 2>&1 | head -1)"
for RUN in $(seq "$RUNS"); do
  for c in $CONNS; do
    for target in $TARGETS; do
      [[ $target = null-spin && $c != 1 ]] && continue  # a spinning CPU per connection: only 1 fits the box
      measure "$target" "$c"
    done
  done
  for target in $TARGETS; do
    [[ $target = postgrey || $target = null* ]] && continue
    measure "$target" 8 "$RATE"
  done
done
[[ -n ${RAW_OUT:-} ]] && cp "$RAW" "$RAW_OUT"

python3 - "$RAW" <<'PY'
import json, sys
from statistics import median
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["target"], r["connections"], r.get("target_rate", 0)), []).append(r)
med = lambda rs, k: median(r[k] for r in rs)
pg = {c: (med(rs, "requests_per_s"), med(rs, "requests_per_cpu_s")) for (t, c, rate), rs in groups.items() if t == "postgrey" and not rate}
print("| target | conns | rate | runs | requests/s (median) | min–max | × postgrey | requests per daemon CPU-s | × postgrey | p50 ms | p99 ms | p99.9 ms | paced: p50 / p99 / p99.9 ms without client timer lateness | replies (run 1) | per run: load / busy before / other CPU during |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
order = {"postgrey": 0, "sqlite": 1, "redis": 2, "null": 3, "null-netpoll": 4, "null-spin": 5}
warn = []
for (t, c, rate), rs in sorted(groups.items(), key=lambda kv: (kv[0][2] > 0, kv[0][1], order.get(kv[0][0], 9))):
    rps, cpu = med(rs, "requests_per_s"), med(rs, "requests_per_cpu_s")
    ratio = f"{rps / pg[c][0]:.1f}×" if c in pg and not rate else "–"
    cratio = f"{cpu / pg[c][1]:.1f}×" if c in pg and not rate and pg[c][1] else "–"
    acts = ", ".join(f"{k} {v}" for k, v in sorted(rs[0]["actions"].items()))
    ctx = "; ".join(f'{r["load"]} / {r["cpu_busy_before_pct"]}% / {r["other_cpu_pct"]}%' for r in rs)
    corr = " / ".join(f'{med(rs, k):.3f}' for k in ("corr_p50_ms", "corr_p99_ms", "corr_p999_ms")) if rate and all("corr_p99_ms" in r for r in rs) else "–"
    if any(r["actions"] != rs[0]["actions"] for r in rs):
        warn.append(f"{t} {c} conns: replies differ between runs: " + "; ".join(str(r["actions"]) for r in rs))
    print(f'| {t} | {c} | {f"{rate:.0f}/s" if rate else "max"} | {len(rs)} | {rps:,.0f} | {min(r["requests_per_s"] for r in rs):,.0f}–{max(r["requests_per_s"] for r in rs):,.0f} | {ratio} | '
          f'{cpu:,.0f} | {cratio} | {med(rs, "p50_ms"):.3f} | {med(rs, "p99_ms"):.3f} | {med(rs, "p999_ms"):.3f} | {corr} | {acts} | {ctx} |')
for w in warn:
    print(f"\nWARNING: {w} (every measurement must start from an empty database)")
PY
