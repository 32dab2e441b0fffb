#!/usr/bin/env bash
# Memory of a node doing repair: peak RSS of the node that rebuilds the
# members of a dead node, rs:12+4 with one copy and 64 MiB chunks.
#
#   scripts/repair_mem.sh
#
# Starts a coordinator, 16 regular nodes and one hot spare (release build,
# data under target/repair-mem/), puts STRIPES full stripes of random data
# (12 x 64 MiB each; random, so stored raw at full size), kills with
# SIGKILL the node holding the most members, and waits until repair has
# brought every stripe back. The spare is repair's first choice, so it
# rebuilds every lost member, up to 3 at once (the coordinator's
# per-target cap): its VmHWM (peak RSS, /proc/PID/status) is the figure.
# Also printed: the spare's RSS before the repair, the largest VmHWM of
# any other node (they serve the reads), the repair traffic from status,
# and a byte-exact get afterwards.
#
# Target (issue 9): a node doing repair stays under 512 MiB.
#
# With MIXED=1 the data is random with 512 zero bytes in every 4 KiB, so
# LZ4 saves about 12% and every member is stored compressed: the worst
# case for memory (a rebuild then holds a member's stored and decompressed
# bytes besides its output).
#
# Knobs: STRIPES [3], MIXED [0], REPAIR_MEM_DIR [target/repair-mem].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${REPAIR_MEM_DIR:-$ROOT/target/repair-mem}
BIN=$ROOT/target/release/dfs-sim
RUN=$WORK/run
LOGS=$WORK/logs
STRIPES=${STRIPES:-3}
MIXED=${MIXED:-0}
NODES=16
CHUNK_MIB=64
TARGET_MIB=512

log() { printf '[repair-mem %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v jq >/dev/null || {
  log "jq is needed to read status --json"
  exit 1
}
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"

listen_addr() { sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$LOGS/$1.log" | head -1; }
announced() { [[ -n $(listen_addr "$1") ]]; }
status() { "$BIN" status --json; }
all_alive() { [[ $(status | jq '[.nodes[] | select(.state == "alive")] | length') -ge $((NODES + 1)) ]]; }
# kib PID FIELD : a VmHWM / VmRSS line of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { echo $(($1 / 1024)); }

mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN" && mkdir -p "$RUN"
log "building release"
(cd "$ROOT" && cargo build --release --quiet)

start coord "$BIN" coord --listen 127.0.0.1:0 --data "$RUN/coord" \
  --replication 1 --parity rs:12+4 --chunk-size ${CHUNK_MIB}MiB \
  --heartbeat-ms 500 --dead-after 6 --delete-grace 1s --no-auto-rebalance
wait_for 30 announced coord
export DFS_COORD
DFS_COORD=$(listen_addr coord)
for ((i = 0; i < NODES; i++)); do
  start "n$i" "$BIN" node --id "n$i" --listen 127.0.0.1:0 --data "$RUN/n$i" --coord "$DFS_COORD"
done
start spare "$BIN" node --id spare --listen 127.0.0.1:0 --data "$RUN/spare" --coord "$DFS_COORD" --spare
wait_for 60 all_alive

SIZE=$((STRIPES * 12 * CHUNK_MIB * 1024 * 1024))
DATA=$RUN/data.bin
if ((MIXED)); then
  log "writing $((SIZE / 1048576)) MiB of random data with zero runs (compressible by ~12%)"
  python3 - "$SIZE" >"$DATA" <<'PY'
import os, sys
left = int(sys.argv[1])
out = sys.stdout.buffer
while left > 0:
    n = min(left, 64 << 20)
    b = bytearray(os.urandom(n))
    zero = bytes(512)
    for i in range(0, n - 512, 4096):
        b[i:i + 512] = zero
    out.write(b)
    left -= n
PY
else
  log "writing $((SIZE / 1048576)) MiB of random data"
  head -c "$SIZE" /dev/urandom >"$DATA"
fi
log "put (rs:12+4, ${CHUNK_MIB} MiB chunks)"
"$BIN" put "$DATA" --name mem/data >"$LOGS/put.out" 2>&1 || {
  log "put failed: $(tail -1 "$LOGS/put.out")"
  exit 1
}
# shellcheck disable=SC2154 # PID_spare is set by start
SPARE_PID=$PID_spare
before_rss=$(kib "$SPARE_PID" VmRSS)
before_hwm=$(kib "$SPARE_PID" VmHWM)

victim=$(status | jq -r '[.nodes[] | select(.spare | not)] | max_by(.chunks) | .id')
held=$(status | jq -r --arg v "$victim" '.nodes[] | select(.id == $v) | .chunks')
log "killing $victim ($held members)"
var="PID_$victim"
kill -9 "${!var}"
{ wait "${!var}"; } 2>/dev/null || true
t0=$(date +%s.%N)
wait_for 60 bash -c "'$BIN' status --json | jq -e '.nodes[] | select(.id == \"$victim\") | .state == \"dead\"' >/dev/null"
wait_for 600 bash -c "'$BIN' status --json | jq -e '.repair.incident_open_ms == null and .repair.done_chunks >= $held and .under_protected_total == 0' >/dev/null"
t1=$(date +%s.%N)

hwm=$(kib "$SPARE_PID" VmHWM)
others=0
for ((i = 0; i < NODES; i++)); do
  [[ n$i == "$victim" ]] && continue
  var="PID_n$i"
  h=$(kib "${!var}" VmHWM)
  ((h > others)) && others=$h
done
s=$(status)
spare_chunks=$(jq -r '.nodes[] | select(.id == "spare") | .chunks' <<<"$s")
traffic=$(jq -r '.repair.incident | "\(.read_bytes / 1048576 | floor) MiB read for \(.rebuilt_bytes / 1048576 | floor) MiB rebuilt (\(.read_per_rebuilt * 100 | round / 100) per byte)"' <<<"$s")

log "get, byte-exact check"
"$BIN" get mem/data --out "$RUN/out.bin" >"$LOGS/get.out" 2>&1
if cmp -s "$DATA" "$RUN/out.bin"; then exact=yes; else exact=NO; fi

echo
echo "dfs-sim node repair memory: rs:12+4, R=1, ${CHUNK_MIB} MiB chunks, $STRIPES stripes of $( ((MIXED)) && echo "compressible" || echo "random") data, $NODES nodes + 1 spare, one run"
echo "repaired on the spare:             $spare_chunks member(s) in $(awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", z - a }') s from the kill"
echo "repair traffic (last incident):    $traffic"
echo "spare RSS before repair:           $(mib "$before_rss") MiB (VmHWM $(mib "$before_hwm") MiB)"
echo "spare peak RSS (VmHWM) repairing:  $(mib "$hwm") MiB (target < $TARGET_MIB MiB: $( (($(mib "$hwm") < TARGET_MIB)) && echo PASS || echo FAIL))"
echo "largest VmHWM of the other nodes:  $(mib "$others") MiB (serving the reads)"
echo "get after repair byte-exact:       $exact"
