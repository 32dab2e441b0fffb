#!/usr/bin/env bash
# Catalog at scale: how the coordinator copes as the namespace grows to a
# million one-chunk files.
#
#   scripts/scale.sh                 # stages 0, 100k, 500k, 1M (about an hour here)
#   STAGES="0 20000 100000" scripts/scale.sh
#
# At each stage it prints: small-put rate (4 KiB files, loadgen, 8 workers),
# coordinator RSS and bytes per file, snapshot size and the time of the last
# snapshot, restart time (kill -9 to serving `status`), and the time of `ls`
# of the whole namespace and of `fsck`. The baseline is the rate on the
# empty catalog measured in the same run; the last column is the ratio.
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

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$COORD_PID/status"; }
files=0
base_rate=""
printf '| files | put/s | vs empty | coord RSS (MiB) | bytes/file | snapshot (MiB) | last snapshot (ms) | restart (s) | ls (s) | fsck (s) | load avg |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
stage_no=0
for target in $STAGES; do
  stage_no=$((stage_no + 1))
  if [ "$target" -gt "$files" ]; then
    log "filling to $target files"
    "$BIN" loadgen --op put --count $((target - files)) --size "$FILL_SIZE" \
      --concurrency "$FILL_CONCURRENCY" --prefix "fill$stage_no" >/dev/null
    files=$target
  fi
  out=$("$BIN" loadgen --op put --count "$SAMPLE" --size 4096 --concurrency 8 --prefix "sample$stage_no")
  rate=$(printf '%s\n' "$out" | grep -oE 'ops_per_s=[0-9]+' | cut -d= -f2)
  files=$((files + SAMPLE))
  [ -n "$base_rate" ] || base_rate=$rate
  ratio=$(awk -v a="$rate" -v b="$base_rate" 'BEGIN { printf "%.2fx", a / b }')
  rss=$(rss_kib)
  per_file=$(awk -v r="$rss" -v f="$files" 'BEGIN { if (f == 0) print "n/a"; else printf "%.0f", r * 1024 / f }')
  snap=$(stat -c %s "$WORK/coord/catalog.snap" 2>/dev/null || echo 0)
  last_snap=$(grep -oE 'catalog snapshot written.*' "$WORK/logs/coord.log" | grep -oE 'ms=[0-9]+' | tail -1 | cut -d= -f2)
  t0=$(now); "$BIN" ls --json >/dev/null 2>"$WORK/logs/ls.err" && ls_s=$(secs "$t0" "$(now)") || ls_s="error"
  t0=$(now); "$BIN" fsck >/dev/null 2>"$WORK/logs/fsck.err" && fsck_s=$(secs "$t0" "$(now)") || fsck_s="error"
  kill -9 "$COORD_PID"; wait "$COORD_PID" 2>/dev/null || true
  t0=$(now); start_coord; serving; restart=$(secs "$t0" "$(now)")
  nodes_alive
  printf '| %d | %s | %s | %.0f | %s | %.1f | %s | %s | %s | %s | %s |\n' \
    "$files" "$rate" "$ratio" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" "$per_file" \
    "$(awk -v s="$snap" 'BEGIN { print s / 1048576 }')" "${last_snap:-n/a}" "$restart" "$ls_s" "$fsck_s" \
    "$(cut -d' ' -f1 /proc/loadavg)"
done
log "done; logs in $WORK/logs"
