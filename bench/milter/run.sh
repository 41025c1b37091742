#!/usr/bin/env bash
# Milter-protocol throughput: dovetail's milter vs rspamd's milter (rspamd_proxy,
# milter = yes, self_scan), same go-milter client, same corpus messages, 1 and 2
# concurrent MTA connections (make bench).
#
#   bench/milter/run.sh                 N=2000 messages per run, 3 interleaved runs, both targets
#   N=500 RSPAMD=0 bench/milter/run.sh  dovetail only
#
# Both run rules only (dovetail: default ruleset, Bayes off; rspamd: Debian's
# stock rules with the peers' offline config from ../shared/peers/spam, Bayes
# untrained so it abstains). rspamd gets two proxy processes (one per core) and
# a DNS sink answering REFUSED at once; network checks are off as in the peers'
# config. Needs root (rspamd drops to _rspamd).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../lib.sh"
SHARED=${DOVETAIL_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PEER=$SHARED/peers/spam
N=${N:-2000}; RSPAMD=${RSPAMD:-1}
log() { printf '[milter-bench %(%T)T] %s\n' -1 "$*" >&2; }

[[ -d $SHARED/corpus/ham ]] || { log "corpus not found under $SHARED (set DOVETAIL_SHARED)"; exit 1; }
TMP=$(mktemp -d /tmp/mbench.XXXXXX); chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && { kill -TERM "$p"; wait "$p" 2>/dev/null || true; }
  done
}
trap 'cleanup; [[ ${KEEP:-0} = 1 ]] && log "kept $TMP" || rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM


log "building the driver and dovetail"
(cd "$ROOT" && go build -o "$TMP/milter-bench" ./bench/milter && go build -o "$TMP/dovetail" ./cmd/dovetail)
ARGS=(-corpus "$SHARED/corpus" -n "$N" -repeat "${REPEAT:-3}")

# dovetail as its own process, like rspamd: rules only (Bayes off), no DNS checks.
DOVETAIL_PORT=$(free_port)
cat >"$TMP/dovetail.yaml" <<EOF2
data_dir: $TMP/dovetail-data
daemons: [milter]
log: {level: warn}
metrics: {listen: ""}
spam:
  bayes: {enabled: false}
authcheck: {spf: false, dkim: false, dmarc: false}
milter:
  listen: {address: "127.0.0.1:$DOVETAIL_PORT"}
EOF2
"$TMP/dovetail" -c "$TMP/dovetail.yaml" milter >"$TMP/dovetail.out" 2>&1 & PIDS+=($!); DOVETAIL_PID=$!
wait_port "$DOVETAIL_PORT" || { tail -n 20 "$TMP/dovetail.out" >&2; exit 1; }
ARGS+=(-dovetail-addr "127.0.0.1:$DOVETAIL_PORT")

if [[ $RSPAMD = 1 ]] && command -v rspamd >/dev/null && command -v redis-server >/dev/null; then
  DNS_SINK_PORT=$(free_port); REDIS_PORT=$(free_port); RSPAMD_PORT=$(free_port)
  RSPAMD_CTRL_PORT=$(free_port); RSPAMD_PROXY_PORT=$(free_port)
  "$TMP/milter-bench" -dns-sink "127.0.0.1:$DNS_SINK_PORT" & PIDS+=($!)
  mkdir -p "$TMP/redis"
  render() { sed -e "s|@DNS_SINK_PORT@|$DNS_SINK_PORT|g; s|@REDIS_PORT@|$REDIS_PORT|g; s|@RSPAMD_PORT@|$RSPAMD_PORT|g" \
                 -e "s|@RSPAMD_CTRL_PORT@|$RSPAMD_CTRL_PORT|g; s|@RSPAMD_PROXY_PORT@|$RSPAMD_PROXY_PORT|g" \
                 -e "s|@RSPAMD_WORKERS@|1|g; s|@WORK@|$TMP|g" "$1"; }
  render "$PEER/redis/redis.conf" >"$TMP/redis/redis.conf"
  redis-server "$TMP/redis/redis.conf" & PIDS+=($!)
  cp -r "$PEER/rspamd" "$TMP/rspamd"
  for f in $(find "$TMP/rspamd" -type f); do render "$f" >"$f.tmp" && mv "$f.tmp" "$f"; done
  # The milter: the proxy in milter mode scanning in-process, one per core.
  cat >"$TMP/rspamd/override.d/worker-proxy.inc" <<EOF2
bind_socket = "127.0.0.1:$RSPAMD_PROXY_PORT";
milter = yes;
timeout = 120s;
count = 2;
upstream "local" {
  default = yes;
  self_scan = yes;
}
EOF2
  install -d -o _rspamd -g _rspamd "$TMP/db" "$TMP/run" "$TMP/log"
  wait_port "$REDIS_PORT"
  rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf \
    --var="LOCAL_CONFDIR=$TMP/rspamd" --var="DBDIR=$TMP/db" --var="RUNDIR=$TMP/run" --var="LOGDIR=$TMP/log" \
    >"$TMP/rspamd.out" 2>&1 & PIDS+=($!); RSPAMD_PID=$!
  log "waiting for rspamd (proxy/milter on $RSPAMD_PROXY_PORT)"
  wait_port "$RSPAMD_PROXY_PORT" 3000 || { tail -n 20 "$TMP/rspamd.out" "$TMP/log/"* >&2; exit 1; }
  ARGS+=(-rspamd-addr "127.0.0.1:$RSPAMD_PROXY_PORT")
else
  log "rspamd not run (RSPAMD=$RSPAMD or rspamd/redis-server missing)"
fi

log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$TMP/milter-bench" "${ARGS[@]}"
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
log "dovetail milter process: peak RSS $(awk '/^VmHWM:/ {print int($2/1024)}' /proc/$DOVETAIL_PID/status) MiB, PSS now $(awk '/^Pss:/ {print int($2/1024)}' /proc/$DOVETAIL_PID/smaps_rollup) MiB"
if [[ -n ${RSPAMD_PID:-} ]]; then
  # Peak RSS of our rspamd's process tree (main + proxies + workers), not any other rspamd on the box.
  kb=0; pss=0
  for p in $RSPAMD_PID $(ps -o pid= --ppid "$RSPAMD_PID"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); kb=$((kb + ${v:-0}))
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); pss=$((pss + ${v:-0}))
  done
  log "rspamd memory over its process tree: peak RSS sum $((kb / 1024)) MiB (shared pages counted per process), PSS now $((pss / 1024)) MiB"
fi
