#!/usr/bin/env bash
# Side-by-side LMTP delivery benchmark: dovetail lmtpd vs Dovecot LMTP (+ Pigeonhole),
# same Go load generator (bench/lmtpd/main.go), same disk, same users, same Sieve
# script (../shared/peers/lmtp/before.sieve), fsync on for both (Dovecot's default
# mail_fsync = optimized; dovetail's lmtpd.fsync = true).
#   bench/lmtpd/run.sh                 full matrix, RUNS=1 (about 2-3 minutes)
#   RUNS=3 N=1000 bench/lmtpd/run.sh   what docs/benchmarks.md reports
#   SERVERS="dovetail" bench/lmtpd/run.sh   only one side
# Needs root (Dovecot drops to the mail user; maildirs are chowned to it).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../lib.sh"
PEER=${PEER:-$(cd "$ROOT/../shared/peers/lmtp" 2>/dev/null && pwd || true)}
N=${N:-1000}; RUNS=${RUNS:-1}; NUSERS=${NUSERS:-100}; PORT=${LMTP_PORT:-24624}
SERVERS=${SERVERS:-"dovecot dovetail"}
log() { printf '[lmtpd-bench %(%T)T] %s\n' -1 "$*" >&2; }
[[ -n $PEER && -f $PEER/before.sieve ]] || { log "peer material not found (set PEER=.../shared/peers/lmtp)"; exit 1; }

B=$(mktemp -d /tmp/lmtpd-bench-bin.XXXXXX)
PID=""; D=""
cleanup() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"; for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"; wait "$PID" 2>/dev/null || true
  fi
  PID=""
  if [[ -n $D && -d $D ]]; then [[ ${KEEP:-0} = 1 ]] && log "kept $D" || rm -rf "$D"; fi
  D=""
}
trap 'cleanup; rm -rf "$B"' EXIT
trap 'exit 130' INT TERM

log "building dovetail and the load generator"
(cd "$ROOT" && go build -o "$B/dovetail" ./cmd/dovetail && go build -o "$B/lmtpd-bench" ./bench/lmtpd)

uid=$(id -u mail); gid=$(id -g mail)

setup_homes() {
  D=$(mktemp -d /tmp/lmtpd-bench.XXXXXX); chmod 755 "$D"; mkdir -p "$D/run" "$D/state" "$D/home" "$D/data"
  : >"$D/passwd"; : >"$D/users"
  local i u
  for ((i = 0; i < NUSERS; i++)); do
    u=$(printf 'u%03d' "$i")
    printf '%s:{PLAIN}pw-%s:%s:%s::%s/home/%s::\n' "$u" "$u" "$uid" "$gid" "$D" "$u" >>"$D/passwd"
    printf '%s@example.com:{PLAIN}pw-%s:%s:%s::%s/home/%s::\n' "$u" "$u" "$uid" "$gid" "$D" "$u" >>"$D/users"
    mkdir -p "$D/home/$u/Maildir/"{cur,new,tmp} "$D/home/$u/Maildir/.Quarantine/"{cur,new,tmp}
    : >"$D/home/$u/Maildir/.Quarantine/maildirfolder"
  done
  chown -R mail:mail "$D/home"
  cp "$PEER/before.sieve" "$D/before.sieve"; chmod 644 "$D/before.sieve"
}

start_dovecot() {  # $1 = nosieve|sieve
  sed -e "s#@D@#$D#g" -e "s#@PORT@#$PORT#g" "$PEER/dovecot.conf.in" >"$D/dovecot.conf"
  if [[ $1 == sieve ]]; then
    sed -e "s#@D@#$D#g" "$PEER/sieve.conf.in" >>"$D/dovecot.conf"
    sievec -c "$D/dovecot.conf" "$D/before.sieve"; chmod 644 "$D/before.svbin"
  fi
  dovecot -F -c "$D/dovecot.conf" & PID=$!
}

start_dovetail() {  # $1 = nosieve|sieve
  local sieve=false; [[ $1 == sieve ]] && sieve=true
  cat >"$D/dovetail.yaml" <<YAML
data_dir: $D/data
daemons: [lmtpd]
log: {level: warn}
metrics: {listen: ""}
directory:
  backend: static
  static: {path: $D/users}
lmtpd:
  listen: {address: "127.0.0.1:$PORT"}
  hostname: bench.example.com
  fsync: true
  sieve:
    enabled: $sieve
    before: [$D/before.sieve]
quarantine: {dir: $D/data/quarantine}
YAML
  "$B/dovetail" -c "$D/dovetail.yaml" lmtpd 2>>"$D/dovetail.log" & PID=$!
}

check() {  # $1 mode $2 expected
  local got lists quar
  got=$(find "$D/home" -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l)
  [[ $got -eq $2 ]] || { log "expected $2 delivered files, found $got"; tail -5 "$D"/*.log; exit 1; }
  if [[ $1 == sieve ]]; then
    lists=$(find "$D/home" -type f -path '*/.Lists/new/*' | wc -l)
    quar=$(find "$D/home" -type f -path '*/.Quarantine/new/*' | wc -l)
    [[ $lists -gt 0 && $quar -gt 0 ]] || { log "sieve did not file (Lists=$lists Quarantine=$quar)"; exit 1; }
  fi
}

mkdir -p "$HERE/raw"
RAW="$HERE/raw/lmtpd-$(date +%Y%m%d-%H%M%S).jsonl"
log "N=$N runs=$RUNS users=$NUSERS servers=$SERVERS -> $RAW ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
for ((run = 1; run <= RUNS; run++)); do
  for mode in nosieve sieve; do
    for conns in 1 8; do
      for rcpts in 1 5; do
        for srv in $SERVERS; do
          port_open "$PORT" && { log "port $PORT busy"; exit 1; }
          setup_homes
          "start_$srv" "$mode"
          for _ in $(seq 200); do port_open "$PORT" && break; sleep 0.05; done
          sync; sleep 1
          res=$("$B/lmtpd-bench" -addr "127.0.0.1:$PORT" -n "$N" -conns "$conns" -rcpts "$rcpts" -users "$NUSERS")
          check "$mode" $((N * rcpts))
          line="{\"server\": \"$srv\", \"run\": $run, \"sieve\": \"$mode\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", ${res#\{}"
          echo "$line" >>"$RAW"; log "$line"
          cleanup
        done
      done
    done
  done
done

python3 - "$RAW" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = sorted({(r["sieve"], r["connections"], r["rcpts_per_msg"]) for r in rows})
print("| sieve | conns | rcpts | dovecot deliv/s | dovetail deliv/s | ratio | dovecot p50/p99 ms | dovetail p50/p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for c in cells:
    def med(srv, f):
        v = [r[f] for r in rows if r["server"] == srv and (r["sieve"], r["connections"], r["rcpts_per_msg"]) == c]
        return st.median(v) if v else float("nan")
    dv, dt = med("dovecot", "deliveries_per_s"), med("dovetail", "deliveries_per_s")
    print(f"| {c[0]} | {c[1]} | {c[2]} | {dv:.0f} | {dt:.0f} | {dt/dv:.2f}x | "
          f"{med('dovecot','p50_ms'):.1f} / {med('dovecot','p99_ms'):.1f} | {med('dovetail','p50_ms'):.1f} / {med('dovetail','p99_ms'):.1f} |")
PY
