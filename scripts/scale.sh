#!/usr/bin/env bash
# Catalog at scale: how the coordinator copes as the namespace grows to a
# million one-chunk files.
#
#   scripts/scale.sh                 # stages 0, 100k, 500k, 1M (about an hour here)
#   STAGES="0 20000 100000" scripts/scale.sh
#
# At each stage it prints: small-put rate (4 KiB files, loadgen, 8 workers;
# the median of three runs), coordinator RSS and bytes per file while
# running, RSS after a restart and the coordinator's peak RSS, snapshot size
# and the time of the last snapshot, restart time (kill -9 to serving
# `status`) and the coordinator's CPU time until then, and the time and client peak RSS of `ls` of the whole namespace
# and of `fsck`, and the load average (the box is shared). The baseline
# ("empty put/s", "vs empty") is an empty cluster of the same layout run
# beside the big one and sampled alternately with it.
#
# The cluster is 3 nodes with one copy and no parity: this measures the
# coordinator's catalog, not the nodes' disks.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/dfs-sim}
WORK=${SCALE_DIR:-$ROOT/target/scale}
STAGES=${STAGES:-"0 100000 500000 1000000"}
SAMPLE=${SAMPLE:-3000}
FILL_CONCURRENCY=${FILL_CONCURRENCY:-16}
# Fill files are small (the catalog holds one chunk per file whatever its
# size); the measured sample puts are 4 KiB.
FILL_SIZE=${FILL_SIZE:-512}
PORT=${PORT:-4600}
COORD=127.0.0.1:$PORT
# A second, empty cluster (same layout) sampled alternately with the big
# one: the box is shared, so "vs empty" compares runs minutes apart only if
# both are measured at the same moments.
REF_PORT=$((PORT + 10))
REF_COORD=127.0.0.1:$REF_PORT

[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK/logs"
export DFS_COORD=$COORD
unset DFS_SECRET DFS_KEY

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.2f", z - a }'; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${COORD_PID:-}" ] && kill -9 "$COORD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_coord() {
  "$BIN" coord --listen "$COORD" --data "$WORK/coord" --replication 1 --parity none \
    --chunk-size 64KiB --heartbeat-ms 1000 >>"$WORK/logs/coord.log" 2>&1 &
  COORD_PID=$!
}

serving() {
  local deadline=$(( $(date +%s) + 120 ))
  until "$BIN" status --json >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "coordinator did not come up"; exit 1; }
    sleep 0.05
  done
}

start_coord
for i in 1 2 3; do
  "$BIN" node --id "n$i" --listen "127.0.0.1:$((PORT + i))" --coord "$COORD" \
    --data "$WORK/n$i" --reserve 0 --scrub-rate 0 >>"$WORK/logs/n$i.log" 2>&1 &
  PIDS+=($!)
done
# Nodes re-register after each restart of the coordinator; puts need them.
nodes_alive() {
  local deadline=$(( $(date +%s) + 120 ))
  until [ "$("$BIN" status --json | grep -c '"state": "alive"')" -ge 3 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "nodes did not re-register"; exit 1; }
    sleep 0.1
  done
}
serving
nodes_alive
"$BIN" coord --listen "$REF_COORD" --data "$WORK/ref/coord" --replication 1 --parity none \
  --chunk-size 64KiB --heartbeat-ms 1000 >>"$WORK/logs/ref-coord.log" 2>&1 &
PIDS+=($!)
for i in 1 2 3; do
  "$BIN" node --id "r$i" --listen "127.0.0.1:$((REF_PORT + i))" --coord "$REF_COORD" \
    --data "$WORK/ref/n$i" --reserve 0 --scrub-rate 0 >>"$WORK/logs/ref-n$i.log" 2>&1 &
  PIDS+=($!)
done
deadline=$(( $(date +%s) + 120 ))
until [ "$(DFS_COORD=$REF_COORD "$BIN" status --json 2>/dev/null | grep -c '"state": "alive"')" -ge 3 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { log "reference cluster did not come up"; exit 1; }
  sleep 0.1
done

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$COORD_PID/status"; }
hwm_kib() { awk '/VmHWM/ { print $2 }' "/proc/$COORD_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
# Runs a client command, printing its wall time in seconds and its peak RSS
# in MiB ("error" if it failed).
timed() {
  local t0 t1 peak
  t0=$(now)
  if /usr/bin/time -f %M -o "$WORK/logs/time.out" "$@" >/dev/null 2>"$WORK/logs/client.err"; then
    t1=$(now)
    peak=$(tail -1 "$WORK/logs/time.out")
    printf '%s %s' "$(secs "$t0" "$t1")" "$(mib "$peak")"
  else
    printf 'error error'
  fi
}
# Three sample runs of SAMPLE/3 puts on the big cluster, each followed by
# one on the empty reference cluster; prints both medians.
sample() {
  local r rates=() refs=()
  one() {
    "$BIN" loadgen --op put --count $((SAMPLE / 3)) --size 4096 --concurrency 8 --prefix "$1" |
      grep -oE 'ops_per_s=[0-9]+' | cut -d= -f2
  }
  for r in 1 2 3; do
    rates+=("$(one "sample$1-$r")")
    refs+=("$(DFS_COORD=$REF_COORD one "sample$1-$r")")
  done
  printf '%s %s' "$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)" \
    "$(printf '%s\n' "${refs[@]}" | sort -n | sed -n 2p)"
}
files=0
printf '| files | put/s | empty put/s | vs empty | coord RSS (MiB) | bytes/file | RSS after restart (MiB) | coord peak (MiB) | snapshot (MiB) | last snapshot (ms) | restart (s) | restart CPU (s) | ls (s) | ls peak (MiB) | fsck (s) | fsck peak (MiB) | load avg |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
stage_no=0
for target in $STAGES; do
  stage_no=$((stage_no + 1))
  if [ "$target" -gt "$files" ]; then
    log "filling to $target files"
    "$BIN" loadgen --op put --count $((target - files)) --size "$FILL_SIZE" \
      --concurrency "$FILL_CONCURRENCY" --prefix "fill$stage_no" >/dev/null
    files=$target
  fi
  log "sampling at $files files"
  read -r rate ref_rate <<<"$(sample "$stage_no")"
  files=$((files + SAMPLE / 3 * 3))
  ratio=$(awk -v a="$rate" -v b="$ref_rate" 'BEGIN { printf "%.2fx", a / b }')
  rss=$(rss_kib)
  per_file=$(awk -v r="$rss" -v f="$files" 'BEGIN { if (f == 0) print "n/a"; else printf "%.0f", r * 1024 / f }')
  snap=$(stat -c %s "$WORK/coord/catalog.snap" 2>/dev/null || echo 0)
  last_snap=$(grep -oE 'catalog snapshot written.*' "$WORK/logs/coord.log" | grep -oE 'ms=[0-9]+' | tail -1 | cut -d= -f2)
  read -r ls_s ls_peak <<<"$(timed "$BIN" ls --json)"
  read -r fsck_s fsck_peak <<<"$(timed "$BIN" fsck)"
  # The coordinator's peak RSS since it started: the fill, the samples,
  # snapshots, ls and fsck all included.
  peak=$(hwm_kib)
  kill -9 "$COORD_PID"; wait "$COORD_PID" 2>/dev/null || true
  t0=$(now); start_coord; serving; restart=$(secs "$t0" "$(now)")
  # CPU the coordinator spent to get there: on a shared box the wall time
  # is mostly waiting for a core.
  restart_cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$COORD_PID/stat")
  nodes_alive
  rss_restart=$(rss_kib)
  printf '| %d | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$files" "$rate" "$ref_rate" "$ratio" "$(mib "$rss")" "$per_file" "$(mib "$rss_restart")" "$(mib "$peak")" \
    "$(awk -v s="$snap" 'BEGIN { print s / 1048576 }')" "${last_snap:-n/a}" "$restart" "$restart_cpu" \
    "$ls_s" "$ls_peak" "$fsck_s" "$fsck_peak" "$(cut -d' ' -f1 /proc/loadavg)"
done
log "done; logs in $WORK/logs"
