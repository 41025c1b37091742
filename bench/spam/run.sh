#!/usr/bin/env bash
# Side-by-side spam benchmark: dovetail in-process vs SpamAssassin's spamd vs
# rspamd, on the same fixed split of ../shared/corpus (train on one half, score
# the other; split by FNV-1a of the file name, see bench/spam/dovetailbench).
# Network tests are off for the peers (configs from ../shared/peers/spam, every
# DNS query goes to a local sink that answers REFUSED at once).
#
#   bench/spam/run.sh [SHARED_DIR]      (run from the repository root; needs root
#                                        for spamd -u nobody and rspamd -u _rspamd)
# Prints one JSON line per engine and concurrency. Set PEERS=0 to skip the peers.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${1:-${DOVETAIL_SHARED:-$ROOT/../shared}}
CORPUS=$SHARED/corpus
PEERCFG=$SHARED/peers/spam
PEERS=${PEERS:-1}
W=$(mktemp -d /tmp/dovetail-spambench.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$W"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port timeout_s
	for _ in $(seq 1 $(( $2 * 10 ))); do
		if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 did not open" >&2; return 1
}

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
( cd "$ROOT" && go build -o "$W/dovetailbench" ./bench/spam/dovetailbench )
for s in train-ham train-spam test-ham test-spam; do
	"$W/dovetailbench" -corpus "$CORPUS" -split $s > "$W/$s.list"
done
echo "# split: train $(cat "$W"/train-*.list | wc -l), test $(wc -l < "$W/test-ham.list") ham + $(wc -l < "$W/test-spam.list") spam" >&2

# --- dovetail, in-process (peak RSS of the whole process, training included)
for c in 1 2; do
	/usr/bin/time -f '%M' -o "$W/rss" "$W/dovetailbench" -corpus "$CORPUS" -c $c -bayes=true | tr -d '}\n'
	echo ",\"peak_rss_mib\":$(( $(cat "$W/rss") / 1024 ))}"
done
"$W/dovetailbench" -corpus "$CORPUS" -c 1 -bayes=false -rounds 1

[ "$PEERS" = 1 ] || exit 0

# --- DNS sink
DNS=$(port)
python3 "$ROOT/bench/spam/peers.py" dnssink "$DNS" "$W/dnscount" & PIDS+=($!)

subst() { # file
	sed -e "s|@WORK@|$W|g" -e "s|@DNS_SINK_PORT@|$DNS|g" -e "s|@REDIS_PORT@|${REDIS:-0}|g" \
		-e "s|@RSPAMD_PORT@|${RSPAMD:-0}|g" -e "s|@RSPAMD_CTRL_PORT@|${RCTRL:-0}|g" \
		-e "s|@RSPAMD_PROXY_PORT@|${RPROXY:-0}|g" -e "s|@RSPAMD_WORKERS@|2|g" "$1"
}

# --- SpamAssassin: sa-learn on the training half, spamd (2 children) scores
SA=$W/sa-conf
mkdir -p "$SA" "$W/sa/bayes"
chmod 777 "$W/sa" "$W/sa/bayes"
for f in local.cf plugins.pre bayes-on.cf; do subst "$PEERCFG/spamassassin/$f" > "$SA/$f"; done
sa-learn -L --siteconfigpath="$SA" --spam -f "$W/train-spam.list" >&2
sa-learn -L --siteconfigpath="$SA" --ham -f "$W/train-ham.list" >&2
chmod -R a+rw "$W/sa/bayes"
SPAMD=$(port)
spamd -L -x -u nobody -m 2 --min-children=2 --siteconfigpath="$SA" -i 127.0.0.1 -p "$SPAMD" \
	-s stderr 2>"$W/spamd.log" & SPAMD_PID=$!; PIDS+=($SPAMD_PID)
wait_port "$SPAMD" 120
for c in 1 2; do python3 "$ROOT/bench/spam/peers.py" score spamd "$SPAMD" "$W/test-ham.list" "$W/test-spam.list" $c $SPAMD_PID; done
kill $SPAMD_PID; wait $SPAMD_PID 2>/dev/null || true

# --- rspamd + private Redis: learn through the controller, scan over HTTP
REDIS=$(port); RSPAMD=$(port); RCTRL=$(port); RPROXY=$(port)
mkdir -p "$W/redis" "$W/rspamd-db" "$W/run" "$W/log"
chown _rspamd:_rspamd "$W/rspamd-db" "$W/run" "$W/log"
subst "$PEERCFG/redis/redis.conf" > "$W/redis.conf"
redis-server "$W/redis.conf" & REDIS_PID=$!; PIDS+=($REDIS_PID)
wait_port "$REDIS" 30
cp -r "$PEERCFG/rspamd" "$W/rspamd-local"
for f in $(find "$W/rspamd-local" -type f); do subst "$f" > "$f.tmp" && mv "$f.tmp" "$f"; done
rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf --var="LOCAL_CONFDIR=$W/rspamd-local" \
	--var="DBDIR=$W/rspamd-db" --var="RUNDIR=$W/run" --var="LOGDIR=$W/log" >"$W/rspamd.out" 2>&1 & RSPAMD_PID=$!; PIDS+=($RSPAMD_PID)
wait_port "$RSPAMD" 120; wait_port "$RCTRL" 60
python3 "$ROOT/bench/spam/peers.py" rspamd-learn "$RCTRL" "$W/train-spam.list" spam
python3 "$ROOT/bench/spam/peers.py" rspamd-learn "$RCTRL" "$W/train-ham.list" ham
for c in 1 2; do python3 "$ROOT/bench/spam/peers.py" score rspamd "$RSPAMD" "$W/test-ham.list" "$W/test-spam.list" $c $RSPAMD_PID $REDIS_PID; done
echo "# DNS queries that reached the sink: $(cat "$W/dnscount" 2>/dev/null || echo 0)" >&2
