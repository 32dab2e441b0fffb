#!/usr/bin/env bash
# Mount benchmark, one run, same machine: dfs-sim mount against dfs-sim's
# own put/get and against `rclone mount` of dfs-sim's S3 gateway (the peer a
# user would otherwise pick).
#
#   scripts/mount_bench.sh
#
# Rows: sequential write and read of a SIZE_MIB file (cp into the mount,
# cat out of a fresh open; put/get with the CLI); FILES files of 4 KiB
# copied in with cp -r (files/s) and listed with ls -l (after the metadata
# cache expired); fio sequential (1 MiB) and random 4 KiB read jobs on the
# big file (IOPS). Needs root, fuse3, rclone and fio (installed if missing).
#
# Environment knobs [defaults]: BENCH_DIR [target/bench], SIZE_MIB [1024],
# FILES [10000], FIO_SECS [20], CHUNK [the coordinator's 64 MiB],
# PROFILE [release] (debug for a quick look while others build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_DIR:-$ROOT/target/bench}
SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-10000}
FIO_SECS=${FIO_SECS:-20}
PROFILE=${PROFILE:-release}
RUN=$WORK/mountrun
LOGS=$WORK/mountlogs
AK=BENCHACCESSKEY
SK=bench-secret-key-0123456789
BYTES=$((SIZE_MIB * 1024 * 1024))

log() { printf '[mount-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"
# shellcheck source=bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"
umount_all() {
  for m in "$RUN/dfs" "$RUN/rclone"; do fusermount3 -u -z "$m" 2>/dev/null || true; done
}
trap 'umount_all; cleanup' EXIT

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v rclone >/dev/null || missing+=(rclone)
command -v fio >/dev/null || missing+=(fio)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN"/{dfs,rclone,data,spill}
if [ "$PROFILE" = release ]; then
  log "building release"
  (cd "$ROOT" && cargo build --release --quiet --bin dfs-sim)
  BIN=$ROOT/target/release/dfs-sim
else
  (cd "$ROOT" && cargo build --quiet --bin dfs-sim)
  BIN=$ROOT/target/debug/dfs-sim
fi

CP=$(next_port); N1=$(next_port); N2=$(next_port); N3=$(next_port); S3P=$(next_port)
chunk=()
[ -n "${CHUNK:-}" ] && chunk=(--chunk-size "$CHUNK")
start coord "$BIN" coord --listen "127.0.0.1:$CP" --data "$RUN/data/coord" "${chunk[@]}"
export DFS_COORD=127.0.0.1:$CP
for i in 1 2 3; do
  port_var=N$i
  start "n$i" "$BIN" node --id "n$i" --listen "127.0.0.1:${!port_var}" --data "$RUN/data/n$i" --coord "$DFS_COORD"
done
for _ in $(seq 1 300); do
  [ "$("$BIN" status 2>/dev/null | grep -c ' alive ')" -ge 3 ] && break
  sleep 0.1
done
echo "$AK $SK" >"$RUN/s3.keys"
start s3 "$BIN" s3 --listen "127.0.0.1:$S3P" --credentials-file "$RUN/s3.keys"
start mount "$BIN" mount "$RUN/dfs" --foreground --spill-dir "$RUN/spill"
# rclone refuses a custom CA bundle with an endpoint over plain http.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_DFS_TYPE=s3 RCLONE_CONFIG_DFS_PROVIDER=Other
export RCLONE_CONFIG_DFS_ACCESS_KEY_ID=$AK RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY=$SK
export RCLONE_CONFIG_DFS_ENDPOINT=http://127.0.0.1:$S3P RCLONE_CONFIG_DFS_REGION=us-east-1
for _ in $(seq 1 300); do rclone mkdir dfs:bench 2>/dev/null && break; sleep 0.1; done
# rclone's default cache mode (off) streams writes; reads by range.
start rclone rclone mount dfs:bench "$RUN/rclone" --dir-cache-time 1s
for m in "$RUN/dfs" "$RUN/rclone"; do
  for _ in $(seq 1 300); do grep -q " $m " /proc/self/mountinfo && break; sleep 0.1; done
  grep -q " $m " /proc/self/mountinfo || { log "$m not mounted"; tail "$LOGS"/*.log; exit 1; }
done

log "making a ${SIZE_MIB} MiB file and ${FILES} files of 4 KiB"
head -c "$BYTES" /dev/urandom >"$RUN/big"
mkdir -p "$RUN/small"
for ((i = 0; i < FILES; i++)); do head -c 4096 /dev/urandom >"$RUN/small/f$i"; done
cat "$RUN/big" >/dev/null

declare -A R
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
seq_rows() { # NAME DIR
  local t0 t1
  t0=$(now); cp "$RUN/big" "$2/big"; t1=$(now)
  R[$1.write]=$(mbps "$BYTES" "$t0" "$t1")
  drop
  t0=$(now); cat "$2/big" >/dev/null; t1=$(now)
  R[$1.read]=$(mbps "$BYTES" "$t0" "$t1")
  cmp -s "$RUN/big" "$2/big" || log "$1: read back different bytes!"
}
small_rows() { # NAME DIR
  local t0 t1
  t0=$(now); cp -r "$RUN/small" "$2/small"; t1=$(now)
  R[$1.cp]=$(awk -v n="$FILES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", n / (z - a) }')
  sleep 2 # both mounts' metadata caches (1 s) expire: ls -l asks the cluster
  t0=$(now); ls -l "$2/small" >/dev/null; t1=$(now)
  R[$1.ls]=$(secs "$t0" "$t1")
}
fio_rows() { # NAME DIR
  local out
  out=$(fio --name=seq --filename="$2/big" --readonly --rw=read --bs=1M --size="${SIZE_MIB}M" \
    --runtime="$FIO_SECS" --time_based --output-format=terse --terse-version=3 2>"$LOGS/fio-$1.err" || true)
  R[$1.fioseq]=$(awk -F';' '{ print $8 }' <<<"$out")
  out=$(fio --name=rand --filename="$2/big" --readonly --rw=randread --bs=4k --size="${SIZE_MIB}M" \
    --runtime="$FIO_SECS" --time_based --output-format=terse --terse-version=3 2>>"$LOGS/fio-$1.err" || true)
  R[$1.fiorand]=$(awk -F';' '{ print $8 }' <<<"$out")
}

log "dfs-sim put/get"
t0=$(now); "$BIN" put "$RUN/big" --name cli-big >/dev/null; t1=$(now)
R[cli.write]=$(mbps "$BYTES" "$t0" "$t1")
rm -f "$RUN/out"; drop
t0=$(now); "$BIN" get cli-big --out "$RUN/out" >/dev/null; t1=$(now)
R[cli.read]=$(mbps "$BYTES" "$t0" "$t1")
cmp -s "$RUN/big" "$RUN/out" || log "cli: get returned different bytes!"
rm -f "$RUN/out"
for m in dfs rclone; do
  log "$m mount: sequential"
  seq_rows "$m" "$RUN/$m"
  log "$m mount: small files"
  small_rows "$m" "$RUN/$m"
  log "$m mount: fio"
  fio_rows "$m" "$RUN/$m"
done

printf '\n%-44s %12s %12s %12s\n' "mount benchmark (MB = 10^6 B)" "dfs mount" "rclone+S3" "put/get"
printf '%-44s %12s %12s %12s\n' "sequential write ${SIZE_MIB} MiB (MB/s)" "${R[dfs.write]}" "${R[rclone.write]}" "${R[cli.write]}"
printf '%-44s %12s %12s %12s\n' "sequential read ${SIZE_MIB} MiB (MB/s)" "${R[dfs.read]}" "${R[rclone.read]}" "${R[cli.read]}"
printf '%-44s %12s %12s %12s\n' "cp -r ${FILES} x 4 KiB (files/s)" "${R[dfs.cp]}" "${R[rclone.cp]}" "-"
printf '%-44s %12s %12s %12s\n' "ls -l of them (s)" "${R[dfs.ls]}" "${R[rclone.ls]}" "-"
printf '%-44s %12s %12s %12s\n' "fio seq read 1 MiB (IOPS)" "${R[dfs.fioseq]}" "${R[rclone.fioseq]}" "-"
printf '%-44s %12s %12s %12s\n' "fio random read 4 KiB (IOPS)" "${R[dfs.fiorand]}" "${R[rclone.fiorand]}" "-"
