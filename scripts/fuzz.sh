#!/usr/bin/env bash
# fuzz.sh — run every Fuzz target of the module for FUZZTIME each (make fuzz / fuzz-short).
#
# A duration-based -fuzztime can end with a bare "context deadline exceeded" and no
# failing input: a race in Go's fuzz coordinator (golang/go#75804, fixed in Go 1.27, not in
# 1.26.x). That is reported as a flake, not a finding; any run that writes a failing input
# (or fails any other way) fails the whole command.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
flakes=0
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
    echo "fuzz $pkg $t ($FUZZTIME)"
    if $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
      continue
    fi
    if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" &&
       [[ $(grep -c -- '--- FAIL' "$log") == 1 ]]; then
      echo "  flake: Go fuzz coordinator deadline race (golang/go#75804), no failing input"
      flakes=$((flakes + 1))
      continue
    fi
    cat "$log"
    exit 1
  done
done
echo "fuzz: all targets clean ($flakes coordinator-deadline flakes ignored)"
