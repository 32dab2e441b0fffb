#!/usr/bin/env bash
# Erasure-code benchmark, one run, one local cluster per scheme:
#
#   scripts/ec_bench.sh
#
# For each of R=2+xor, rs:6+3 (R=1) and lrc:12+2+2 (R=1) it starts a
# coordinator and 16 nodes (release build, data under target/ec-bench/),
# then measures on the same corpus (CORPUS_MIB of real mixed data, made by
# make_corpus like scripts/bench.sh):
#
#   put MB/s            one put of the corpus
#   get MB/s            healthy get (to a file, byte-exact checked; after one
#                       warm-up get so every get reads from the page cache)
#   degraded-1 / -2     get with one, then two nodes killed (SIGKILL) before
#                       they are declared dead (10 s), so every chunk they
#                       held is decoded from the rest of its stripe
#   repair read/rebuilt the second node is restarted; the first is declared
#                       dead and repaired alone: bytes the nodes read per byte
#                       they rebuilt (status.repair)
#   overhead            stored / logical bytes (status.schemes)
#
# and prints ratios against R=2+xor measured in the same run, with the
# issue's targets: rs:6+3 put >= 1.0x xor's; degraded get >= 0.7x healthy
# for every scheme; LRC repair reads <= 0.6x what RS with the same K reads
# (rs:12+4 is run for that comparison, repair only).
#
# Knobs: CORPUS_MIB [1024], CHUNK [4MiB], EC_BENCH_DIR [target/ec-bench].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${EC_BENCH_DIR:-$ROOT/target/ec-bench}
BIN=$ROOT/target/release/dfs-sim
RUN=$WORK/run
LOGS=$WORK/logs
CORPUS_MIB=${CORPUS_MIB:-1024}
CHUNK=${CHUNK:-4MiB}
NODES=16

log() { printf '[ec-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { s = z - a; if (s <= 0) s = 1e-9; printf "%.1f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2f", a / b }'; }

command -v jq >/dev/null || {
  log "jq is needed to read status --json"
  exit 1
}
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"

listen_addr() { sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$LOGS/$1.log" | head -1; }
announced() { [[ -n $(listen_addr "$1") ]]; }
status() { "$BIN" status --json; }
alive_count() { status | jq '[.nodes[] | select(.state == "alive")] | length'; }
all_alive() { [[ $(alive_count) -ge $NODES ]]; }

mkdir -p "$WORK" "$LOGS"
log "building release"
(cd "$ROOT" && cargo build --release --quiet)
CORPUS=$WORK/corpus-${CORPUS_MIB}MiB.tar
if [[ ! -f $CORPUS ]]; then
  log "making a ${CORPUS_MIB} MiB corpus at $CORPUS"
  make_corpus "$CORPUS" $((CORPUS_MIB * 1024 * 1024))
fi
SIZE=$(stat -c %s "$CORPUS")

declare -A PUT GET DEG1 DEG2 READ OVER
# kill_node LABEL ID : SIGKILL a node of this scheme's cluster and reap it.
kill_node() {
  local var="PID_${1}_$2"
  kill -9 "${!var}" 2>/dev/null || true
  { wait "${!var}"; } 2>/dev/null || true
}
# run_scheme LABEL REPLICATION SCHEME
run_scheme() {
  local label=$1 r=$2 scheme=$3 i t0 t1 s
  rm -rf "$RUN" && mkdir -p "$RUN"
  PIDS=()
  start "coord_$label" "$BIN" coord --listen 127.0.0.1:0 --data "$RUN/coord" \
    --replication "$r" --parity "$scheme" --chunk-size "$CHUNK" \
    --heartbeat-ms 500 --dead-after 20
  wait_for 30 announced "coord_$label"
  export DFS_COORD
  DFS_COORD=$(listen_addr "coord_$label")
  for ((i = 0; i < NODES; i++)); do
    start "${label}_n$i" "$BIN" node --id "n$i" --listen 127.0.0.1:0 --data "$RUN/n$i" --coord "$DFS_COORD"
  done
  wait_for 60 all_alive
  t0=$(now)
  "$BIN" put "$CORPUS" --name bench/corpus >"$LOGS/$label.put" 2>&1 || {
    log "$label: put failed: $(tail -1 "$LOGS/$label.put")"
    return 1
  }
  t1=$(now)
  PUT[$label]=$(mbps "$SIZE" "$t0" "$t1")
  sync
  getrate() {
    local t0 t1
    t0=$(now)
    "$BIN" get bench/corpus --out "$RUN/out" >"$LOGS/$label.get" 2>&1 || {
      log "$label: get failed: $(tail -1 "$LOGS/$label.get")"
      echo 0
      return
    }
    t1=$(now)
    cmp -s "$CORPUS" "$RUN/out" || log "$label: GET NOT BYTE-EXACT"
    rm -f "$RUN/out"
    mbps "$SIZE" "$t0" "$t1"
  }
  getrate >/dev/null
  GET[$label]=$(getrate)
  # Kill the two nodes holding the most copies, one at a time.
  read -r v1 < <(status | jq -r '.nodes | max_by(.chunks) | .id')
  kill_node "$label" "$v1"
  DEG1[$label]=$(getrate)
  read -r v2 < <(status | jq -r --arg v "$v1" '[.nodes[] | select(.id != $v)] | max_by(.chunks) | .id')
  kill_node "$label" "$v2"
  DEG2[$label]=$(getrate)
  start "${label}_$v2" "$BIN" node --id "$v2" --listen 127.0.0.1:0 --data "$RUN/$v2" --coord "$DFS_COORD"
  # Repair traffic of one dead node: wait for it to be repaired.
  wait_for 60 bash -c "'$BIN' status --json | jq -e '[.nodes[] | select(.id == \"$v1\" and .state == \"dead\")] | length == 1' >/dev/null"
  wait_for 300 bash -c "'$BIN' status --json | jq -e '.repair.incident_open_ms == null and .repair.done_bytes > 0 and (.under_protected | length) == 0' >/dev/null"
  s=$(status)
  READ[$label]=$(jq '.repair.read_bytes / .repair.done_bytes | . * 100 | round / 100' <<<"$s")
  OVER[$label]=$(jq '.schemes[0] | .stored_bytes / .logical_bytes | . * 100 | round / 100' <<<"$s")
  log "$label: put ${PUT[$label]} MB/s, get ${GET[$label]}, degraded ${DEG1[$label]} / ${DEG2[$label]}, repair read/rebuilt ${READ[$label]}, overhead ${OVER[$label]}x"
  cleanup_procs
}

# Stops this scheme's processes, keeping the EXIT trap for the rest.
cleanup_procs() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

run_scheme xor 2 xor
run_scheme rs63 1 rs:6+3
run_scheme lrc 1 lrc:12+2+2
run_scheme rs124 1 rs:12+4

echo
echo "dfs-sim erasure-code benchmark: $((SIZE / 1048576)) MiB corpus, $CHUNK chunks, $NODES nodes, one run"
printf '%-12s %9s %9s %11s %11s %14s %9s\n' scheme "put MB/s" "get MB/s" "degr-1 MB/s" "degr-2 MB/s" "repair rd/byte" overhead
for l in xor rs63 lrc rs124; do
  printf '%-12s %9s %9s %11s %11s %14s %8sx\n' "$l" "${PUT[$l]}" "${GET[$l]}" "${DEG1[$l]}" "${DEG2[$l]}" "${READ[$l]}" "${OVER[$l]}"
done
echo
echo "rs:6+3 put / R=2+xor put:            $(ratio "${PUT[rs63]}" "${PUT[xor]}")x (target >= 1.0)"
for l in xor rs63 lrc; do
  echo "$l degraded-1 / healthy get:  $(ratio "${DEG1[$l]}" "${GET[$l]}")x, degraded-2: $(ratio "${DEG2[$l]}" "${GET[$l]}")x (target >= 0.7)"
done
echo "lrc:12+2+2 / rs:12+4 repair reads:   $(ratio "${READ[lrc]}" "${READ[rs124]}")x (target <= 0.6)"
