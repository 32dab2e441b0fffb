#!/usr/bin/env bash
# Repair benchmark: how fast does dfs-sim re-protect ~1 GiB after a node
# crash, with the default (realistic) failure detection?
#
#   scripts/repair_bench.sh
#
# Starts a coordinator (R=2 + xor, 64 MiB chunks, heartbeat 3000 ms,
# dead-after 3: the defaults) and 4 nodes on free local ports, data under
# target/repair-bench/, puts ~1 GiB of real mixed data (the corpus
# scripts/bench.sh makes, built here the same way if missing), kills the
# node holding the most copies with SIGKILL, and polls `status --json` every
# 100 ms:
#
#   detection  kill -> the node shows `dead`
#   repair     detection -> fully protected (repair.last_mttr_ms set, no
#              incident open, under_protected empty)
#   MTTR       kill -> fully protected (the coordinator's own last_mttr_ms,
#              measured from the node's last heartbeat, is printed too)
#   MB/s       repair.done_bytes / repair time (MB = 10^6 bytes)
#
# Then `fsck` must call every file healthy and a get must be byte-exact.
# Target: fully re-protected within 15 s of the death (PASS/FAIL).
#
# Environment knobs (defaults in brackets):
#   REPAIR_BENCH_DIR  work dir [target/repair-bench]
#   CORPUS            input file [target/bench/corpus.bin, else
#                     target/bench/corpus-1024MiB.tar, made if missing]
#   TARGET_S          PASS threshold for MTTR in seconds [15]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${REPAIR_BENCH_DIR:-$ROOT/target/repair-bench}
TARGET_S=${TARGET_S:-15}
BIN=$ROOT/target/release/dfs-sim
RUN=$WORK/run # cluster data, wiped at start and end
LOGS=$WORK/logs
CORPUS_MIB=1024
CORPUS_BYTES=$((CORPUS_MIB * 1024 * 1024))
NODES=4
HEARTBEAT_MS=3000
DEAD_AFTER=3
POLL_LIMIT_S=600

log() { printf '[repair-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v z="$2" 'BEGIN { printf "%.2f", z - a }'; }

command -v jq >/dev/null || {
  log "jq is needed to read status --json"
  exit 1
}

# ---------------------------------------------------------------- processes
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"


# listen_addr NAME : the address a started process announced
listen_addr() {
  sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$LOGS/$1.log" | head -1
}
announced() { [[ -n $(listen_addr "$1") ]]; }

status() { "$BIN" status --json; }
alive_count() { status | jq '[.nodes[] | select(.state == "alive")] | length'; }
all_alive() { [[ $(alive_count) -ge $NODES ]]; }

# ---------------------------------------------------------------- set up
mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN"

log "building release"
(cd "$ROOT" && cargo build --release --quiet)

if [[ -z ${CORPUS:-} ]]; then
  if [[ -f $ROOT/target/bench/corpus.bin ]]; then
    CORPUS=$ROOT/target/bench/corpus.bin
  else
    CORPUS=$ROOT/target/bench/corpus-${CORPUS_MIB}MiB.tar
  fi
fi
if [[ -f $CORPUS ]]; then
  log "reusing corpus $CORPUS ($(stat -c %s "$CORPUS") bytes)"
else
  log "making a ${CORPUS_MIB} MiB corpus from /usr/lib and /usr/share at $CORPUS"
  make_corpus "$CORPUS" "$CORPUS_BYTES"
fi
CORPUS_SIZE=$(stat -c %s "$CORPUS")

log "starting coordinator (R=2 + xor, 64 MiB chunks, heartbeat ${HEARTBEAT_MS} ms, dead-after ${DEAD_AFTER}) and $NODES nodes"
start coord "$BIN" coord --listen 127.0.0.1:0 --data "$RUN/coord" \
  --replication 2 --parity xor --chunk-size 64MiB \
  --heartbeat-ms "$HEARTBEAT_MS" --dead-after "$DEAD_AFTER"
wait_for 30 announced coord
COORD=$(listen_addr coord)
export DFS_COORD=$COORD
for ((i = 0; i < NODES; i++)); do
  start "n$i" "$BIN" node --id "n$i" --listen 127.0.0.1:0 --data "$RUN/n$i" --coord "$COORD"
done
wait_for 60 all_alive

log "putting $CORPUS ($CORPUS_SIZE bytes)"
t0=$(now)
"$BIN" put "$CORPUS" --name bench/corpus >"$LOGS/put.out" 2>&1 || {
  log "put failed: $(tail -1 "$LOGS/put.out")"
  exit 1
}
t1=$(now)
log "$(grep -E '^put ' "$LOGS/put.out" || true) ($(sub "$t0" "$t1") s)"
fully_stored() {
  status | jq -e '(.under_protected | length) == 0 and ([.nodes[] | select(.state == "alive")] | length) == '"$NODES" >/dev/null
}
wait_for 60 fully_stored
sync

# The node holding the most copies.
read -r VICTIM VICTIM_CHUNKS < <(status | jq -r '.nodes | max_by(.chunks) | "\(.id) \(.chunks)"')
DONE_BYTES0=$(status | jq '.repair.done_bytes')
VICTIM_PID_VAR="PID_$VICTIM"
VICTIM_PID=${!VICTIM_PID_VAR}
log "killing $VICTIM (pid $VICTIM_PID, $VICTIM_CHUNKS copies) with SIGKILL"
T_KILL=$(now)
kill -9 "$VICTIM_PID"
# Reap it; the braces keep bash's "Killed" job notice out of the output.
{ wait "$VICTIM_PID"; } 2>/dev/null || true

# ---------------------------------------------------------------- poll
T_DEAD="" T_FULL="" S=""
while :; do
  T=$(now)
  if S=$(status 2>/dev/null); then
    if [[ -z $T_DEAD ]] && jq -e --arg v "$VICTIM" '.nodes[] | select(.id == $v) | .state == "dead"' <<<"$S" >/dev/null; then
      T_DEAD=$T
      log "$VICTIM declared dead after $(sub "$T_KILL" "$T_DEAD") s"
    fi
    if [[ -n $T_DEAD ]] && jq -e '.repair.last_mttr_ms != null and .repair.incident_open_ms == null and (.under_protected | length) == 0' <<<"$S" >/dev/null; then
      T_FULL=$T
      break
    fi
  fi
  if [[ $(sub "$T_KILL" "$T" | cut -d. -f1) -ge $POLL_LIMIT_S ]]; then
    log "not fully protected within $POLL_LIMIT_S s; last status: $S"
    break
  fi
  sleep 0.1
done

# ---------------------------------------------------------------- verify
VERDICT=FAIL
if [[ -n $T_FULL ]]; then
  COORD_MTTR_MS=$(jq '.repair.last_mttr_ms' <<<"$S")
  DONE_BYTES=$(($(jq '.repair.done_bytes' <<<"$S") - DONE_BYTES0))
  DONE_CHUNKS=$(jq '.repair.done_chunks' <<<"$S")
  FAILED=$(jq '.repair.failed' <<<"$S")
  DETECT_S=$(sub "$T_KILL" "$T_DEAD")
  REPAIR_S=$(sub "$T_DEAD" "$T_FULL")
  MTTR_S=$(sub "$T_KILL" "$T_FULL")
  REPAIRED_MIB=$(awk -v b="$DONE_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
  RATE=$(awk -v b="$DONE_BYTES" -v s="$REPAIR_S" 'BEGIN { if (s <= 0) s = 1e-9; printf "%.1f", b / s / 1e6 }')
  COORD_MTTR_S=$(awk -v m="$COORD_MTTR_MS" 'BEGIN { printf "%.2f", m / 1000 }')

  log "fsck"
  FSCK_OK=no
  if "$BIN" fsck >"$LOGS/fsck.out" 2>&1 &&
    "$BIN" fsck --json | jq -e '[.files[] | select(.health != "healthy")] | length == 0' >/dev/null; then
    FSCK_OK=yes
  fi
  tail -1 "$LOGS/fsck.out" >&2
  log "get, compared with the corpus"
  GET_OK=no
  if "$BIN" get bench/corpus --out "$RUN/corpus.out" >"$LOGS/get.out" 2>&1 &&
    cmp -s "$CORPUS" "$RUN/corpus.out"; then
    GET_OK=yes
  fi
  grep -E '^get ' "$LOGS/get.out" >&2 || tail -1 "$LOGS/get.out" >&2
  rm -f "$RUN/corpus.out"

  if [[ $FSCK_OK == yes && $GET_OK == yes ]] &&
    awk -v m="$MTTR_S" -v t="$TARGET_S" 'BEGIN { exit !(m <= t) }'; then
    VERDICT=PASS
  fi

  echo
  echo "dfs-sim repair benchmark: $(awk -v b="$CORPUS_SIZE" 'BEGIN { printf "%.0f", b / 1048576 }') MiB, R=2 + xor, 64 MiB chunks, $NODES nodes, heartbeat ${HEARTBEAT_MS} ms x ${DEAD_AFTER}; killed $VICTIM ($VICTIM_CHUNKS copies)"
  printf '%-34s %12s\n' "metric" "value"
  printf '%-34s %12s\n' "detection (kill -> dead)" "$DETECT_S s"
  printf '%-34s %12s\n' "repair (dead -> fully protected)" "$REPAIR_S s"
  printf '%-34s %12s\n' "repaired" "$REPAIRED_MIB MiB"
  printf '%-34s %12s\n' "repair rate" "$RATE MB/s"
  printf '%-34s %12s\n' "repairs done / failed" "$DONE_CHUNKS / $FAILED"
  printf '%-34s %12s\n' "MTTR (kill -> fully protected)" "$MTTR_S s"
  printf '%-34s %12s\n' "coordinator last_mttr_ms" "$COORD_MTTR_S s"
  printf '%-34s %12s\n' "fsck all healthy" "$FSCK_OK"
  printf '%-34s %12s\n' "get byte-exact" "$GET_OK"
  printf '%-34s %12s\n' "target: protected <= ${TARGET_S} s" "$VERDICT"
else
  echo
  echo "dfs-sim repair benchmark: $VICTIM was not fully re-protected within $POLL_LIMIT_S s"
  echo "target: protected <= ${TARGET_S} s: FAIL"
fi
[[ $VERDICT == PASS ]]
