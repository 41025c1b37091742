#!/usr/bin/env bash
# dovetail authd vs Dovecot's own auth service, side by side in one run (make bench).
#
#   bench/authd/run.sh                                 full matrix, 3 runs per cell
#   RUNS=1 REQ_HIT=5000 REQ_MISS=2000 bench/authd/run.sh   quick run
#   TARGETS=dovetail bench/authd/run.sh                only one side
#   TARGETS=floor CACHES=miss bench/authd/run.sh       only the LDAP floor
#   MODES=attr CACHES=miss CONNS=8 bench/authd/run.sh  some cells only
#
# Same slapd for all (the peer's: ../shared/peers/auth, 1,000 {SSHA} users
# cn=uNNNN + one disabled, filter (&(cn=%u)(status=valid)), built offline with
# slapadd), same client (bench/authd, a Go load generator speaking the auth-client
# protocol like Postfix: AUTH PLAIN, one request in flight per connection), same
# cache settings: hit = 10 MB / 30 min cache, always u0000; miss = cache off, users
# cycling through all 1,000. Dovecot runs exactly the peer's config
# (dovecot.conf.in + dovecot-ldap-{bind,attr}.conf.ext.in, auth_failure_delay = 0);
# dovetail runs `dovetail authd` with LDAP auth_mode bind|password, failure delay 0,
# log level warn (Dovecot's auth_verbose = no logs nothing per login either).
# A third target, floor (cache-miss cells only), has no daemon at all: the load
# generator itself does per login the LDAP work both daemons do on a miss (search
# as the service account, then bind as the found DN on a second connection, or
# fetch userPassword and check the {SSHA} itself; attributes as Dovecot's pass_attrs,
# dovetail also asks for status). By default it does so through dovetail's own
# directory/ldap package in-process (pooled connections, a synchronous request
# loop: the leanest LDAP client we have; FLOOR_CLIENT=goldap uses go-ldap's
# client instead, one connection pair per client connection): dovetail's LDAP
# work without the auth socket's hop. That is about the best any auth daemon
# doing the same LDAP operations could reach on this box, so floor/Dovecot is the
# most a faster daemon could gain over Dovecot on a miss: slapd's share of the
# work sets the limit.
# Every measurement gets a fresh daemon; the cells of all targets are interleaved
# so all see the same contention on a shared box. Besides auths/s and latency each
# raw line has the CPU of slapd and of the daemon's process tree per login (from
# /proc, centisecond ticks; 0 for the floor), the client's own CPU, and
# other_cpu_pct: the share of the box that other processes took during the run.
# Needs root. Prints a median table with the ratios dovetail/Dovecot and
# floor/Dovecot (also saved next to the raw JSON lines in $OUT, default
# bench/authd/results/).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QUIET_MAX=${QUIET_MAX:-10}
. "$HERE/../lib.sh"
SHARED=${DOVETAIL_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PEER=$SHARED/peers/auth
RUNS=${RUNS:-3}; NUSERS=${NUSERS:-1000}; REQ_HIT=${REQ_HIT:-60000}; REQ_MISS=${REQ_MISS:-15000}
CONNS=${CONNS:-"1 8"}; MODES=${MODES:-"bind attr"}; CACHES=${CACHES:-"hit miss"}; TARGETS=${TARGETS:-"dovecot dovetail floor"}
OUT=${OUT:-$HERE/results}
# The LDAP passdb of all three targets (the peer's dovecot-ldap-{bind,attr}.conf.ext.in
# spell out the same dn, dnpass, base, scope = onelevel and pass_filter).
BIND_DN=cn=admin,dc=example,dc=com; BIND_PW=adminsecret; BASE_DN=ou=users,dc=example,dc=com; FILTER='(&(cn=%u)(status=valid))'
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


log "building dovetail and the load generator"
(cd "$ROOT" && go build -o "$T/dovetail" ./cmd/dovetail && go build -o "$T/authd-bench" ./bench/authd)

# ---- slapd: the peer's cn=config and users, on a free port below the ephemeral range
LDAP_PORT=${LDAP_PORT:-$(free_port)}
S=$T/slapd; mkdir -p "$S/slapd.d" "$S/db"; cp "$PEER/mailstatus.ldif" "$S/"
sed -e "s#@D@#$S#g" -e "s#@ADMINHASH@#$(slappasswd -h '{SSHA}' -s "$BIND_PW")#" "$PEER/slapd-config.ldif.in" >"$S/config.ldif"
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

# ---- daemons: start_<target> MODE CACHE sets D_PID, SOCK and the client's target arguments TGT
start_dovecot() {  # MODE=bind|attr CACHE=hit|miss
  local D=$T/dv.$RANDOM; mkdir -p "$D/run" "$D/state"; chmod 755 "$D"
  local cs=10M; [[ $2 == miss ]] && cs=0
  sed -e "s#@D@#$D#g" -e "s#@LDAPCONF@#$1#g" -e "s#@CACHESIZE@#$cs#g" "$PEER/dovecot.conf.in" >"$D/dovecot.conf"
  sed -e "s#@LDAPPORT@#$LDAP_PORT#g" "$PEER/dovecot-ldap-$1.conf.ext.in" >"$D/dovecot-ldap-$1.conf.ext"
  chmod 600 "$D/dovecot-ldap-$1.conf.ext"
  dovecot -F -c "$D/dovecot.conf" &
  D_PID=$!; SOCK=$D/run/auth-client; TGT=(-socket "$SOCK")
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
    bind_dn: $BIND_DN
    bind_password: $BIND_PW
    base_dn: $BASE_DN
    scope: one
    user_filter: $FILTER
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
  D_PID=$!; SOCK=$D/auth-client; TGT=(-socket "$SOCK")
}
start_floor() {  # no daemon: the client talks LDAP itself (miss cells only, the cache is moot)
  D_PID=""; SOCK=""
  TGT=(-ldap "ldap://127.0.0.1:$LDAP_PORT" -passdb "$1" -binddn "$BIND_DN" -bindpw "$BIND_PW" -base "$BASE_DN" -filter "$FILTER" -ldapclient "${FLOOR_CLIENT:-dovetail}")
}
daemon_cs() { if [[ -n $D_PID ]]; then tree_cs "$D_PID"; else echo 0; fi; }  # the floor has no daemon: 0
wait_sock() { [[ -z $D_PID ]] && return 0; for _ in $(seq 200); do [[ -S $SOCK ]] && return 0; kill -0 "$D_PID" 2>/dev/null || break; sleep 0.05; done; log "socket $SOCK never appeared"; exit 1; }

mkdir -p "$OUT"
RAW=$OUT/authd-$(date +%Y%m%d-%H%M%S).jsonl
for target in $TARGETS; do for mode in $MODES; do   # correctness probe per daemon and mode
  "start_$target" "$mode" hit; wait_sock
  log "check $target ldap-$mode:"; "$T/authd-bench" "${TGT[@]}" -check
  stop_pid "$D_PID"; D_PID=""
done; done
for ((run = 1; run <= RUNS; run++)); do
  for mode in $MODES; do for cache in $CACHES; do for conns in $CONNS; do for target in $TARGETS; do
    # The floor is the LDAP work of a miss; a hit does none, so there is nothing to bound.
    [[ $target == floor && $cache == hit ]] && continue
    req=$REQ_HIT; [[ $cache == miss ]] && req=$REQ_MISS
    "start_$target" "$mode" "$cache"; wait_sock
    busy=$(quiet_wait); load=$(cut -d' ' -f1 /proc/loadavg)
    # CPU of slapd, of the daemon's process tree and of the whole box around the
    # measurement (the client reports its own): per-login costs, and how much
    # of the box other people's work took meanwhile.
    sl0=$(tree_cs "$SL_PID"); d0=$(daemon_cs); b0=$(box_cs); w0=$EPOCHREALTIME
    res=$("$T/authd-bench" "${TGT[@]}" -n "$req" -c "$conns" -mode "$cache" -users "$NUSERS")
    w1=$EPOCHREALTIME; sl1=$(tree_cs "$SL_PID"); d1=$(daemon_cs); b1=$(box_cs)
    cpu=$(awk -v n="$req" -v sl=$((sl1 - sl0)) -v d=$((d1 - d0)) -v b=$((b1 - b0)) -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN{print b-a}')" \
      -v c="$(sed -n 's/.*"client_cpu_s":\([0-9.]*\).*/\1/p' <<<"$res")" -v cpus="$(nproc)" 'BEGIN {
        other = b / 100 - sl / 100 - d / 100 - c; if (other < 0) other = 0
        printf "\"slapd_us_per_auth\": %.1f, \"daemon_us_per_auth\": %.1f, \"client_us_per_auth\": %.1f, \"other_cpu_pct\": %.0f", \
          sl * 1e4 / n, d * 1e4 / n, c * 1e6 / n, 100 * other / (w * cpus) }')
    line="{\"run\": $run, \"target\": \"$target\", \"passdb\": \"ldap-$mode\", \"load_before\": $load, \"cpu_busy_before_pct\": $busy, $cpu, ${res#\{}"
    echo "$line" >>"$RAW"; log "$line"
    stop_pid "$D_PID"; D_PID=""
  done; done; done; done
done

{ echo "authd vs Dovecot auth, $(date -u '+%F %H:%M') UTC, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), runs=$RUNS, requests hit/miss=$REQ_HIT/$REQ_MISS"
python3 - "$RAW" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = sorted({(r["passdb"], r["cache"], r["connections"]) for r in rows}, key=lambda c: (c[0] != "ldap-bind", c[1] != "hit", c[2]))
def pick(c, t): return [r for r in rows if (r["passdb"], r["cache"], r["connections"]) == c and r["target"] == t]
def med(rs, f): return st.median(r[f] for r in rs) if rs else float("nan")
def rng(rs): return f"{min(r['auths_per_s'] for r in rs):,.0f}–{max(r['auths_per_s'] for r in rs):,.0f}" if rs else "-"
def cpu(rs): return med([{"x": r["daemon_us_per_auth"] + r["slapd_us_per_auth"]} for r in rs], "x")
print("Medians over %d run(s); server CPU = daemon + slapd CPU per login (µs)." % max(r["run"] for r in rows))
if any(r["target"] == "floor" for r in rows):
    print("LDAP floor (no daemon): the load generator does the same LDAP search + bind / {SSHA} check itself,")
    print("the best any auth daemon doing these LDAP operations could reach here (server CPU = slapd only);")
    print("floor/Dovecot is the most a faster daemon could gain over Dovecot. Cache-miss cells only.")
print()
print("| passdb | cache | conns | Dovecot auths/s (min–max) | p99 ms | server CPU µs | dovetail auths/s (min–max) | p99 ms | server CPU µs | ratio | other CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def val(rs, f, fmt): return format(med(rs, f), fmt) if rs else "-"
for c in cells:
    dv, dt, fl = pick(c, "dovecot"), pick(c, "dovetail"), pick(c, "floor")
    a, b = med(dv, "auths_per_s"), med(dt, "auths_per_s")
    ratio = f"**{b / a:.2f}×**" if dv and dt else "-"
    if dv or dt:
        print(f"| {c[0]} | {c[1]} | {c[2]} | {val(dv, 'auths_per_s', ',.0f')} ({rng(dv)}) | {val(dv, 'p99_ms', '.3f')} | {cpu(dv):.0f} | {val(dt, 'auths_per_s', ',.0f')} ({rng(dt)}) | {val(dt, 'p99_ms', '.3f')} | {cpu(dt):.0f} | {ratio} | {med(dv + dt, 'other_cpu_pct'):.0f} |")
    if fl:  # the floor in the right-hand columns, its ratio to Dovecot in the ratio column
        f = med(fl, "auths_per_s")
        ratio = f"floor/Dovecot **{f / a:.2f}×**" if dv else "-"
        print(f"| {c[0]}: LDAP floor (no daemon) | {c[1]} | {c[2]} | - | - | - | {f:,.0f} ({rng(fl)}) | {med(fl, 'p99_ms'):.3f} | {cpu(fl):.0f} | {ratio} | {med(fl, 'other_cpu_pct'):.0f} |")
loads = [r["load_before"] for r in rows]
print(f"\n1-min load before the runs: {min(loads):.2f}–{max(loads):.2f} (median {st.median(loads):.2f}); raw: {sys.argv[1]}")
PY
} | tee "${RAW%.jsonl}.md"
