# bench/lib.sh — helpers the side-by-side benchmark scripts share (sourced by
# bench/*/run.sh; each script defines log()).

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 10000)); port_open "$p" || { echo "$p"; return; }; done; }
# wait_port PORT [TRIES]: up to TRIES × 50 ms (default 30 s)
wait_port() { for _ in $(seq "${2:-600}"); do port_open "$1" && return 0; sleep 0.05; done; log "port $1 did not open"; return 1; }

cpu_busy() {  # % of all CPUs busy during the next $1 seconds
  local a b; read -r _ u n s i w q sq st _ </proc/stat; a=$((u+n+s+q+sq+st)); b=$((i+w))
  sleep "$1"; read -r _ u n s i w q sq st _ </proc/stat
  local busy=$((u+n+s+q+sq+st-a)) idle=$((i+w-b)); echo $(( busy + idle > 0 ? 100 * busy / (busy + idle) : 0 ))
}
quiet_wait() {  # wait until the box is <= QUIET_PCT % busy (at most QUIET_MAX s); prints the last reading
  local b t=0; while :; do b=$(cpu_busy 1); t=$((t+1)); (( b <= ${QUIET_PCT:-15} || t >= ${QUIET_MAX:-30} )) && break; done; echo "$b"
}
tree_cs() {  # CPU centiseconds (utime+stime+cutime+cstime) of PID $1 and its live descendants
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1 + 0; line = $0; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " ")
      par[pid] = f[2] + 0; cpu[pid] = f[12] + f[13] + f[14] + f[15] }
    END { in_t[root] = 1; ch = 1
          while (ch) { ch = 0; for (p in par) if (!(p in in_t) && (par[p] in in_t)) { in_t[p] = 1; ch = 1 } }
          s = 0; for (p in in_t) s += cpu[p]; print s + 0 }'
}
box_cs() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }  # user nice system irq softirq steal
