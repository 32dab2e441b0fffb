#!/usr/bin/env bash
# What a coordinator group costs: small puts per second and big-file put/get
# MB/s with one coordinator and with a 3-member group (openraft), in the same
# run, on the same nodes' disks; then the failover time as a distribution.
#
#   scripts/group_bench.sh          # ~3-6 min on 2 cores (release build first)
#
# Environment knobs (defaults in brackets):
#   BENCH_DIR      work dir [target/group-bench]
#   SMALL_COUNT    4 KiB puts per measurement [2000]
#   CONCURRENCY    loadgen workers [8]
#   BIG_MIB        big file size in MiB [256]
#   REPS           repetitions of each measurement, median printed [3]
#   KILLS          leader kills for the failover distribution [20] (0 skips)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_DIR:-$ROOT/target/group-bench}
SMALL_COUNT=${SMALL_COUNT:-2000}
CONCURRENCY=${CONCURRENCY:-8}
BIG_MIB=${BIG_MIB:-256}
REPS=${REPS:-3}
KILLS=${KILLS:-20}
BIN=$ROOT/target/release/dfs-sim
RUN=$WORK/run
LOGS=$WORK/logs

log() { printf '[group-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"

(cd "$ROOT" && cargo build --release --bin dfs-sim >&2)
rm -rf "$RUN" && mkdir -p "$RUN" "$LOGS"
BIG=$WORK/big-${BIG_MIB}MiB
[[ -f $BIG ]] || head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$BIG"
SMALLF=$WORK/small-4k
head -c 4096 /dev/urandom >"$SMALLF"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# cluster MEMBERS: starts MEMBERS coordinators (1 = no group) and 4 nodes;
# sets COORDS (the client's list).
cluster() {
  local n=$1 i peers="" list=""
  local ports=()
  for ((i = 1; i <= n; i++)); do ports+=("$(port)"); done
  for ((i = 1; i <= n; i++)); do
    peers+="${peers:+,}c$i=127.0.0.1:${ports[i - 1]}"
    list+="${list:+,}127.0.0.1:${ports[i - 1]}"
  done
  for ((i = 1; i <= n; i++)); do
    local group=()
    ((n > 1)) && group=(--id "c$i" --peers "$peers")
    start "m${n}c$i" "$BIN" coord --listen "127.0.0.1:${ports[i - 1]}" --data "$RUN/m$n/c$i" \
      --heartbeat-ms 500 --delete-grace 5s "${group[@]}"
  done
  for ((i = 1; i <= 4; i++)); do
    start "m${n}n$i" "$BIN" node --id "n$i" --listen "127.0.0.1:$(port)" --data "$RUN/m$n/n$i" --coord "$list"
  done
  COORDS=$list
  wait_for 60 bash -c "DFS_COORD=$list '$BIN' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if sum(n[\"state\"]==\"alive\" for n in d[\"nodes\"])==4 else 1)'"
}

stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

small() { # ops/s of SMALL_COUNT 4 KiB puts
  DFS_COORD=$COORDS "$BIN" loadgen --op put --count "$SMALL_COUNT" --size 4096 \
    --concurrency "$CONCURRENCY" --prefix "$1" 2>/dev/null |
    grep -o 'ops_per_s=[0-9.]*' | head -1 | cut -d= -f2
}

big() { # put MB/s, get MB/s
  local name=$1 t0 t1 t2
  t0=$(date +%s.%N)
  DFS_COORD=$COORDS "$BIN" put "$BIG" --name "$name" >/dev/null 2>&1
  t1=$(date +%s.%N)
  DFS_COORD=$COORDS "$BIN" get "$name" -o "$RUN/out" >/dev/null 2>&1
  t2=$(date +%s.%N)
  cmp -s "$BIG" "$RUN/out" || { log "big file read back wrong"; exit 1; }
  rm -f "$RUN/out"
  python3 -c "b=$BIG_MIB*1048576/1e6; print(f'{b/($t1-$t0):.1f} {b/($t2-$t1):.1f}')"
}

declare -A SMALL PUT GET
for m in 1 3; do
  log "cluster with $m coordinator(s)"
  cluster "$m"
  s=() p=() g=()
  for ((r = 1; r <= REPS; r++)); do
    s+=("$(small "s$m-$r")")
    read -r pu ge < <(big "big$m-$r")
    p+=("$pu") g+=("$ge")
    log "  rep $r: small ${s[-1]} ops/s, big put $pu MB/s, get $ge MB/s"
  done
  SMALL[$m]=$(printf '%s\n' "${s[@]}" | median)
  PUT[$m]=$(printf '%s\n' "${p[@]}" | median)
  GET[$m]=$(printf '%s\n' "${g[@]}" | median)
  if ((m == 3 && KILLS > 0)); then
    log "failover: $KILLS kill -9s of the leader"
    : >"$RUN/gaps"
    for ((k = 1; k <= KILLS; k++)); do
      leader=$(for a in ${COORDS//,/ }; do "$BIN" coordinators --json --coord "$a" 2>/dev/null && break; done |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
      lport=$(DFS_COORD=$COORDS "$BIN" coordinators --json | python3 -c "import json,sys; d=json.load(sys.stdin); print([x['addr'] for x in d['members'] if x['name']=='$leader'][0].split(':')[1])")
      pid=$(pgrep -f "coord --listen 127.0.0.1:$lport ") || true
      t0=$(date +%s.%N)
      kill -9 "$pid"
      until DFS_COORD=$COORDS "$BIN" put "$SMALLF" --name "f$k" >/dev/null 2>&1 </dev/null; do :; done &
      wait $!
      t1=$(date +%s.%N)
      python3 -c "print(f'{$t1-$t0:.2f}')" >>"$RUN/gaps"
      log "  kill $k ($leader): next put done after $(tail -1 "$RUN/gaps") s"
      i=${leader#c}
      start "m3c${i}r$k" "$BIN" coord --listen "127.0.0.1:$lport" --data "$RUN/m3/c$i" \
        --heartbeat-ms 500 --delete-grace 5s --id "$leader" --peers "$(tr ',' '\n' <<<"$COORDS" | awk '{printf "%sc%d=%s", (NR>1?",":""), NR, $0}')"
      sleep 3
    done
  fi
  stop_all
done

echo
echo "| | 1 coordinator | 3-member group | group / single |"
echo "|---|---|---|---|"
python3 - "${SMALL[1]}" "${SMALL[3]}" "${PUT[1]}" "${PUT[3]}" "${GET[1]}" "${GET[3]}" <<'EOF'
import sys
s1,s3,p1,p3,g1,g3=map(float,sys.argv[1:])
print(f"| 4 KiB puts/s | {s1:.0f} | {s3:.0f} | {s3/s1:.2f}x |")
print(f"| big put MB/s | {p1:.1f} | {p3:.1f} | {p3/p1:.2f}x |")
print(f"| big get MB/s | {g1:.1f} | {g3:.1f} | {g3/g1:.2f}x |")
EOF
if ((KILLS > 0)) && [[ -s $RUN/gaps ]]; then
  sort -g "$RUN/gaps" | awk '{a[NR]=$1} END {printf "\nfailover (kill -9 of the leader to the next 4 KiB put acknowledged): min %s s, median %s s, p90 %s s, max %s s over %d kills\n", a[1], a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR], NR}'
fi
