#!/usr/bin/env bash
# Rebuilding the catalog from the nodes (issue 21): time and peak RSS of
# `coord --rebuild-from-nodes` for N one-chunk files on 3 nodes.
#
#   scripts/rebuild_bench.sh            # N = 100000 and 1000000
#   COUNTS="100000" scripts/rebuild_bench.sh
#
# For each N: a coordinator and 3 nodes (release build, replication 2,
# data under target/rebuild-bench/), N files of 4 KiB put with `loadgen`,
# the coordinator killed and its data directory deleted, then a new
# coordinator started with --rebuild-from-nodes on a fresh directory. The
# figures: seconds from its start to its ready line (listing every node's
# tags, assembling, writing the snapshot), the coordinator's VmHWM (peak
# RSS) at that point, each node's VmHWM before and after the rebuild, the
# files the report recovered (must be N), and `ls` counting them again.
#
# Target: 1M files within 60 s, in memory bounded on nodes (pages of at
# most 8,192 tags) and coordinator (the catalog it builds).
#
# Knobs: COUNTS ["100000 1000000"], CONCURRENCY [32], REBUILD_BENCH_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${REBUILD_BENCH_DIR:-$ROOT/target/rebuild-bench}
BIN=$ROOT/target/release/dfs-sim
RUN=$WORK/run
LOGS=$WORK/logs
COUNTS=${COUNTS:-100000 1000000}
CONCURRENCY=${CONCURRENCY:-32}

log() { printf '[rebuild-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v jq >/dev/null || {
  log "jq is needed to read the rebuild report"
  exit 1
}
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"

listen_addr() { sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$LOGS/$1.log" | head -1; }
announced() { [[ -n $(listen_addr "$1") ]]; }
all_alive() { [[ $("$BIN" status --json | jq '[.nodes[] | select(.state == "alive")] | length') -ge 3 ]]; }
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { echo $(($1 / 1024)); }

mkdir -p "$WORK" "$LOGS"
log "building release"
(cd "$ROOT" && cargo build --release --quiet --bin dfs-sim)

for N in $COUNTS; do
  rm -rf "$RUN" && mkdir -p "$RUN"
  start coord "$BIN" coord --listen 127.0.0.1:0 --data "$RUN/coord" \
    --replication 2 --parity none --heartbeat-ms 1000 --no-auto-rebalance
  wait_for 30 announced coord
  export DFS_COORD
  DFS_COORD=$(listen_addr coord)
  NODES=()
  for i in 0 1 2; do
    start "n$i" "$BIN" node --id "n$i" --listen 127.0.0.1:0 --data "$RUN/n$i" --coord "$DFS_COORD"
  done
  wait_for 60 all_alive
  for i in 0 1 2; do
    wait_for 10 announced "n$i"
    NODES+=("$(listen_addr "n$i")")
  done
  log "N=$N: putting $N files of 4 KiB"
  t0=$(date +%s)
  "$BIN" loadgen --op put --count "$N" --size 4096 --concurrency "$CONCURRENCY" \
    --prefix "f" >"$LOGS/loadgen-$N.log" 2>&1
  log "N=$N: put in $(($(date +%s) - t0)) s"
  coord_pid=$PID_coord
  kill -9 "$coord_pid" && wait "$coord_pid" 2>/dev/null || true
  rm -rf "$RUN/coord"
  declare -A before
  for i in 0 1 2; do
    eval "pid=\$PID_n$i"
    before[$i]=$(kib "$pid" VmHWM)
  done
  addrs=$(
    IFS=,
    echo "${NODES[*]}"
  )
  t0=$(date +%s.%N)
  start rebuilt "$BIN" coord --listen "$DFS_COORD" --data "$RUN/coord2" \
    --nodes "$addrs" --rebuild-from-nodes --json --replication 2 --parity none \
    --heartbeat-ms 1000 --no-auto-rebalance
  wait_for 600 announced rebuilt
  t1=$(date +%s.%N)
  coord_hwm=$(kib "$PID_rebuilt" VmHWM)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  # The report follows the ready line.
  wait_for 30 grep -q '"written"' "$LOGS/rebuilt.log"
  files=$(sed -n '/^{/,/^}/p' "$LOGS/rebuilt.log" | jq .files)
  for i in 0 1 2; do
    eval "pid=\$PID_n$i"
    log "N=$N: node n$i VmHWM $(mib "${before[$i]}") MiB before the rebuild, $(mib "$(kib "$pid" VmHWM)") MiB after"
  done
  listed=$("$BIN" ls | wc -l)
  log "N=$N: rebuild $secs s to serving, coordinator peak RSS $(mib "$coord_hwm") MiB, report: $files files, ls: $listed"
  printf 'N=%s rebuild_s=%s coord_peak_mib=%s files=%s ls=%s\n' "$N" "$secs" "$(mib "$coord_hwm")" "$files" "$listed"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
done
