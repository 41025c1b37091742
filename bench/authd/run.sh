#!/usr/bin/env bash
# dovetail authd vs Dovecot's own auth service, side by side in one run (make bench).
#
#   bench/authd/run.sh                                 full matrix, 3 runs per cell
#   RUNS=1 REQ_HIT=5000 REQ_MISS=2000 bench/authd/run.sh   quick run
#   TARGETS=dovetail bench/authd/run.sh                only one side
#
# Same slapd for both (the peer's: ../shared/peers/auth, 1,000 {SSHA} users
# cn=uNNNN + one disabled, filter (&(cn=%u)(status=valid)), built offline with
# slapadd), same client (bench/authd, a Go load generator speaking the auth-client
# protocol like Postfix: AUTH PLAIN, one request in flight per connection), same
# cache settings: hit = 10 MB / 30 min cache, always u0000; miss = cache off, users
# cycling through all 1,000. Dovecot runs exactly the peer's config
# (dovecot.conf.in + dovecot-ldap-{bind,attr}.conf.ext.in, auth_failure_delay = 0);
# dovetail runs `dovetail authd` with LDAP auth_mode bind|password, failure delay 0,
# log level warn (Dovecot's auth_verbose = no logs nothing per login either).
# Every measurement gets a fresh daemon. Needs root. Prints a median table with
# the ratio dovetail/Dovecot; raw JSON lines go to $OUT (default bench/authd/results/).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${DOVETAIL_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PEER=$SHARED/peers/auth
RUNS=${RUNS:-3}; NUSERS=${NUSERS:-1000}; REQ_HIT=${REQ_HIT:-60000}; REQ_MISS=${REQ_MISS:-15000}
CONNS=${CONNS:-"1 8"}; MODES=${MODES:-"bind attr"}; TARGETS=${TARGETS:-"dovecot dovetail"}
OUT=${OUT:-$HERE/results}
log() { printf '[authd-bench %(%T)T] %s\n' -1 "$*" >&2; }

[[ -f $PEER/auth_bench.py ]] || { log "peer material not found at $PEER (set DOVETAIL_SHARED)"; exit 1; }
for b in slapd slapadd slappasswd ldapsearch dovecot doveconf python3; do
  command -v "$b" >/dev/null || { log "missing $b (make bench-deps)"; exit 1; }
done
[[ -f /usr/lib/dovecot/modules/auth/libauthdb_ldap.so ]] || { log "missing dovecot-ldap"; exit 1; }

T=$(mktemp -d /tmp/abench.XXXXXX); chmod 755 "$T"
SL_PID=""; D_PID=""
stop_pid() {
  local p=$1
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p"
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  wait "$p" 2>/dev/null || true
}
cleanup() { stop_pid "$D_PID"; stop_pid "$SL_PID"; [[ ${KEEP:-0} = 1 ]] && log "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 10000)); port_open "$p" || { echo "$p"; return; }; done; }
cpu_busy() {
  local a b; read -r _ u n s i w q sq st _ </proc/stat; a=$((u+n+s+q+sq+st)); b=$((i+w))
  sleep "$1"; read -r _ u n s i w q sq st _ </proc/stat
  local busy=$((u+n+s+q+sq+st-a)) idle=$((i+w-b)); echo $(( busy + idle > 0 ? 100 * busy / (busy + idle) : 0 ))
}
quiet_wait() { local b t=0; while :; do b=$(cpu_busy 1); t=$((t+1)); (( b <= ${QUIET_PCT:-15} || t >= ${QUIET_MAX:-20} )) && break; done; echo "$b"; }

log "building dovetail and the load generator"
(cd "$ROOT" && go build -o "$T/dovetail" ./cmd/dovetail && go build -o "$T/authd-bench" ./bench/authd)

# ---- slapd: the peer's cn=config and users, on a free port below the ephemeral range
LDAP_PORT=${LDAP_PORT:-$(free_port)}
S=$T/slapd; mkdir -p "$S/slapd.d" "$S/db"; cp "$PEER/mailstatus.ldif" "$S/"
sed -e "s#@D@#$S#g" -e "s#@ADMINHASH@#$(slappasswd -h '{SSHA}' -s adminsecret)#" "$PEER/slapd-config.ldif.in" >"$S/config.ldif"
slapadd -n 0 -F "$S/slapd.d" -l "$S/config.ldif" >"$S/slapadd.log" 2>&1 || { cat "$S/slapadd.log"; exit 1; }
python3 "$PEER/auth_bench.py" ldif "$NUSERS" >"$S/users.ldif"
slapadd -q -n 1 -F "$S/slapd.d" -l "$S/users.ldif" >>"$S/slapadd.log" 2>&1 || { cat "$S/slapadd.log"; exit 1; }
slapd -F "$S/slapd.d" -h "ldap://127.0.0.1:$LDAP_PORT/" -d 0 >"$S/slapd.log" 2>&1 &
SL_PID=$!
for _ in $(seq 100); do
  ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT/" -s base -b "" namingContexts >/dev/null 2>&1 && break
  kill -0 "$SL_PID" 2>/dev/null || { cat "$S/slapd.log"; exit 1; }
  sleep 0.1
done
log "slapd $(slapd -VV 2>&1 | grep -o 'slapd [0-9.]*') on $LDAP_PORT with $NUSERS users; $(dovecot --version | cut -d' ' -f1) ; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# ---- daemons: start_<target> MODE CACHE sets D_PID and SOCK
start_dovecot() {  # MODE=bind|attr CACHE=hit|miss
  local D=$T/dv.$RANDOM; mkdir -p "$D/run" "$D/state"; chmod 755 "$D"
  local cs=10M; [[ $2 == miss ]] && cs=0
  sed -e "s#@D@#$D#g" -e "s#@LDAPCONF@#$1#g" -e "s#@CACHESIZE@#$cs#g" "$PEER/dovecot.conf.in" >"$D/dovecot.conf"
  sed -e "s#@LDAPPORT@#$LDAP_PORT#g" "$PEER/dovecot-ldap-$1.conf.ext.in" >"$D/dovecot-ldap-$1.conf.ext"
  chmod 600 "$D/dovecot-ldap-$1.conf.ext"
  dovecot -F -c "$D/dovecot.conf" &
  D_PID=$!; SOCK=$D/run/auth-client
}
start_dovetail() {
  local D=$T/dt.$RANDOM; mkdir -p "$D"
  local cs=10MB am=bind; [[ $2 == miss ]] && cs=0; [[ $1 == attr ]] && am=password
  cat >"$D/dovetail.yaml" <<YAML
data_dir: $D/data
daemons: [authd]
log: {level: warn, format: text}
metrics: {listen: ""}
directory:
  backend: ldap
  ldap:
    uris: [ldap://127.0.0.1:$LDAP_PORT]
    bind_dn: cn=admin,dc=example,dc=com
    bind_password: adminsecret
    base_dn: ou=users,dc=example,dc=com
    scope: one
    user_filter: (&(cn=%u)(status=valid))
    auth_mode: $am
    default_scheme: SSHA
authd:
  listen: {address: "unix:$D/auth-client"}
  cache_ttl: 30m
  cache_size: $cs
  failure_delay: 0s
  failure_delay_max: 0s
YAML
  env ${DOVETAIL_ENV:-} "$T/dovetail" -c "$D/dovetail.yaml" authd 2>>"$D/dovetail.log" &
  D_PID=$!; SOCK=$D/auth-client
}
wait_sock() { for _ in $(seq 200); do [[ -S $SOCK ]] && return 0; kill -0 "$D_PID" 2>/dev/null || break; sleep 0.05; done; log "socket $SOCK never appeared"; exit 1; }

mkdir -p "$OUT"
RAW=$OUT/authd-$(date +%Y%m%d-%H%M%S).jsonl
for target in $TARGETS; do for mode in $MODES; do   # correctness probe per daemon and mode
  "start_$target" "$mode" hit; wait_sock
  log "check $target ldap-$mode:"; "$T/authd-bench" -socket "$SOCK" -check
  stop_pid "$D_PID"; D_PID=""
done; done
for ((run = 1; run <= RUNS; run++)); do
  for mode in $MODES; do for cache in hit miss; do for conns in $CONNS; do for target in $TARGETS; do
    req=$REQ_HIT; [[ $cache == miss ]] && req=$REQ_MISS
    "start_$target" "$mode" "$cache"; wait_sock
    busy=$(quiet_wait); load=$(cut -d' ' -f1 /proc/loadavg)
    res=$("$T/authd-bench" -socket "$SOCK" -n "$req" -c "$conns" -mode "$cache" -users "$NUSERS")
    line="{\"run\": $run, \"target\": \"$target\", \"passdb\": \"ldap-$mode\", \"load_before\": $load, \"cpu_busy_before_pct\": $busy, ${res#\{}"
    echo "$line" >>"$RAW"; log "$line"
    stop_pid "$D_PID"; D_PID=""
  done; done; done; done
done

python3 - "$RAW" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = sorted({(r["passdb"], r["cache"], r["connections"]) for r in rows})
med = lambda rs, f: st.median(r[f] for r in rs) if rs else float("nan")
print("| passdb | cache | conns | Dovecot auths/s | p99 ms | dovetail auths/s | p99 ms | ratio |")
print("|---|---|---|---|---|---|---|---|")
for c in cells:
    dv = [r for r in rows if (r["passdb"], r["cache"], r["connections"]) == c and r["target"] == "dovecot"]
    dt = [r for r in rows if (r["passdb"], r["cache"], r["connections"]) == c and r["target"] == "dovetail"]
    a, b = med(dv, "auths_per_s"), med(dt, "auths_per_s")
    ratio = f"{b / a:.2f}x" if dv and dt else "-"
    print(f"| {c[0]} | {c[1]} | {c[2]} | {a:.0f} | {med(dv, 'p99_ms'):.3f} | {b:.0f} | {med(dt, 'p99_ms'):.3f} | {ratio} |")
print(f"\nraw: {sys.argv[1]}")
PY
