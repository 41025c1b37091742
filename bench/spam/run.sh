#!/usr/bin/env bash
# Side-by-side spam benchmark: dovetail in-process vs SpamAssassin's spamd vs
# rspamd, on the same fixed split of ../shared/corpus (train on one half, score
# the other; split by FNV-1a of the file name, see bench/spam/dovetailbench).
# Network tests are off for the peers (configs from ../shared/peers/spam, every
# DNS query goes to a local sink that answers REFUSED at once).
#
#   bench/spam/run.sh [SHARED_DIR]      (run from the repository root; needs root
#                                        for spamd -u nobody and rspamd -u _rspamd)
# Engines are measured in interleaved rounds (dovetail, spamd, rspamd at 1 and
# 2 concurrent clients, ROUNDS times, default 3) so all see the same contention
# from whatever else runs on the machine; the summary reports medians. Every
# raw JSON line goes to $OUT (default /tmp/spambench-results.jsonl). Set
# PEERS=0 to measure dovetail alone; SMOKE=N lets the peers score only N
# messages per class (a quick check of the harness, not a measurement).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${1:-${DOVETAIL_SHARED:-$ROOT/../shared}}
CORPUS=$SHARED/corpus
PEERCFG=$SHARED/peers/spam
PEERS=${PEERS:-1}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/spambench-results.jsonl}
: > "$OUT"
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
if [ -n "${SMOKE:-}" ]; then # harness check: peers score only SMOKE messages of each class
	for s in test-ham test-spam; do head -n "$SMOKE" "$W/$s.list" > "$W/$s.tmp" && mv "$W/$s.tmp" "$W/$s.list"; done
fi
echo "# split: train $(cat "$W"/train-*.list | wc -l), test $(wc -l < "$W/test-ham.list") ham + $(wc -l < "$W/test-spam.list") spam" >&2

# --- dovetail, in-process (peak RSS of the whole process, corpus and training included)
dovetail() { # concurrency bayes round
	/usr/bin/time -f '%M' -o "$W/rss" "$W/dovetailbench" -corpus "$CORPUS" -c "$1" -bayes="$2" -rounds 1 | tr -d '}\n'
	echo ",\"peak_rss_mib\":$(( $(cat "$W/rss") / 1024 )),\"round\":$3}"
}
if [ "$PEERS" != 1 ]; then
	for r in $(seq 1 "$ROUNDS"); do for c in 1 2; do dovetail $c true "$r" | tee -a "$OUT"; done; done
	dovetail 1 false 0 | tee -a "$OUT"
	python3 "$ROOT/bench/spam/peers.py" summary "$OUT"
	exit 0
fi

# --- DNS sink
DNS=$(port)
python3 "$ROOT/bench/spam/peers.py" dnssink "$DNS" "$W/dnscount" & PIDS+=($!)

subst() { # file
	sed -e "s|@WORK@|$W|g" -e "s|@DNS_SINK_PORT@|$DNS|g" -e "s|@REDIS_PORT@|${REDIS:-0}|g" \
		-e "s|@RSPAMD_PORT@|${RSPAMD:-0}|g" -e "s|@RSPAMD_CTRL_PORT@|${RCTRL:-0}|g" \
		-e "s|@RSPAMD_PROXY_PORT@|${RPROXY:-0}|g" -e "s|@RSPAMD_WORKERS@|2|g" "$1"
}

# --- SpamAssassin: sa-learn on the training half; spamd (2 children, one per core)
SA=$W/sa-conf; SA0=$W/sa-conf-nobayes
mkdir -p "$SA" "$SA0" "$W/sa/bayes"
chmod 777 "$W/sa" "$W/sa/bayes"
for f in local.cf plugins.pre bayes-on.cf; do subst "$PEERCFG/spamassassin/$f" > "$SA/$f"; done
for f in local.cf plugins.pre bayes-off.cf; do subst "$PEERCFG/spamassassin/$f" > "$SA0/$f"; done
t0=$(date +%s)
sa-learn -L --siteconfigpath="$SA" --spam -f "$W/train-spam.list" >&2
sa-learn -L --siteconfigpath="$SA" --ham -f "$W/train-ham.list" >&2
echo "# sa-learn on the training half: $(( $(date +%s) - t0 )) s" >&2
chmod -R a+rw "$W/sa/bayes"
start_spamd() { # confdir
	SPAMD=$(port)
	spamd -L -x -u nobody -m 2 --min-children=2 --siteconfigpath="$1" -i 127.0.0.1 -p "$SPAMD" \
		-s stderr 2>>"$W/spamd.log" & SPAMD_PID=$!; PIDS+=($SPAMD_PID)
	wait_port "$SPAMD" 120
}
start_spamd "$SA"

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
t0=$(date +%s)
python3 "$ROOT/bench/spam/peers.py" rspamd-learn "$RCTRL" "$W/train-spam.list" spam
python3 "$ROOT/bench/spam/peers.py" rspamd-learn "$RCTRL" "$W/train-ham.list" ham
echo "# rspamd learn on the training half: $(( $(date +%s) - t0 )) s" >&2

peer() { # engine port concurrency round pids...
	local e=$1 p=$2 c=$3 r=$4; shift 4
	python3 "$ROOT/bench/spam/peers.py" score "$e" "$p" "$W/test-ham.list" "$W/test-spam.list" "$c" "$@" |
		sed "s/}\$/, \"bayes\": true, \"round\": $r}/"
}
for r in $(seq 1 "$ROUNDS"); do
	echo "# round $r, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	for c in 1 2; do
		dovetail $c true "$r" | tee -a "$OUT"
		peer spamd "$SPAMD" $c "$r" $SPAMD_PID | tee -a "$OUT"
		peer rspamd "$RSPAMD" $c "$r" $RSPAMD_PID $REDIS_PID | tee -a "$OUT"
	done
done

# --- without Bayes: dovetail's rules alone; spamd restarted with use_bayes 0 (its
# no-Bayes score set); rspamd's figure is computed per message above (score less
# the BAYES_* weights)
dovetail 1 false 0 | tee -a "$OUT"
kill $SPAMD_PID; wait $SPAMD_PID 2>/dev/null || true
start_spamd "$SA0"
peer spamd "$SPAMD" 2 0 $SPAMD_PID | sed 's/"bayes": true/"bayes": false/' | tee -a "$OUT"
echo "# DNS queries that reached the sink: $(cat "$W/dnscount" 2>/dev/null || echo 0)" >&2
python3 "$ROOT/bench/spam/peers.py" summary "$OUT"
