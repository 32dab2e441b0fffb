#!/usr/bin/env bash
# S3 gateway benchmark: `aws s3 cp` put and get of the 1 GiB corpus through
# dfs-sim's gateway and through SeaweedFS's `weed s3` (same machine, same
# run), and dfs-sim's own put/get for the gateway's overhead. Also records
# the gateway's peak RSS and checks it over a 5 GiB single PUT and a 5 GiB
# multipart upload (zeros: cheap on disk, same memory path).
#
#   scripts/s3_bench.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_DIR     work dir for corpus, data, logs [target/bench]
#   CORPUS_MIB    corpus size in MiB [1024]
#   REPS          puts/gets per system, median reported [3]
#   BIG_GIB       size of the RSS check uploads in GiB, 0 to skip [5]
#   SKIP_SEAWEED=1
#
# aws cli runs with its defaults (8 MiB multipart parts, 10 in parallel)
# against both gateways; MB = 10^6 bytes; process start-up included.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_DIR:-$ROOT/target/bench}
CORPUS_MIB=${CORPUS_MIB:-1024}
REPS=${REPS:-3}
BIG_GIB=${BIG_GIB:-5}
SKIP_SEAWEED=${SKIP_SEAWEED:-0}
BIN=$ROOT/target/release/dfs-sim
CORPUS=$WORK/corpus-${CORPUS_MIB}MiB.tar
CORPUS_BYTES=$((CORPUS_MIB * 1024 * 1024))
RUN=$WORK/s3run
LOGS=$WORK/s3logs
AK=BENCHACCESSKEY
SK=bench-secret-key-0123456789

log() { printf '[s3-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=procs.sh
source "$ROOT/scripts/procs.sh"
# shellcheck source=bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"

mkdir -p "$WORK" "$LOGS"
rm -rf "$RUN"
mkdir -p "$RUN"
command -v aws >/dev/null || { log "aws cli not found (apt-get install awscli)"; exit 1; }

log "building release"
(cd "$ROOT" && cargo build --release --quiet)
if [[ -f $CORPUS && $(stat -c %s "$CORPUS") -eq $CORPUS_BYTES ]]; then
  log "reusing corpus $CORPUS"
else
  log "making a ${CORPUS_MIB} MiB corpus from /usr/lib and /usr/share"
  make_corpus "$CORPUS" "$CORPUS_BYTES"
fi
cat "$CORPUS" >/dev/null

export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$RUN/aws-config AWS_SHARED_CREDENTIALS_FILE=$RUN/aws-credentials
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE
touch "$AWS_CONFIG_FILE" "$AWS_SHARED_CREDENTIALS_FILE"

declare -A R S
for k in dfs.put dfs.get gw.put gw.get sw.put sw.get gw.rss big.single big.multi; do R[$k]="n/a"; done
NOTES=()
add_sample() { S[$1]+="$2 "; }
median() {
  tr ' ' '\n' <<<"${S[$1]:-}" | grep . | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
hwm_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo n/a; }

# s3_put_get KEY ENDPOINT : REPS aws s3 cp up and down, byte-checked.
s3_put_get() {
  local key=$1 ep=$2 i t0 t1
  for ((i = 1; i <= REPS; i++)); do
    log "$key: aws s3 cp put ($i/$REPS)"
    t0=$(now)
    aws --endpoint-url "$ep" s3 cp --no-progress "$CORPUS" "s3://bench/corpus-$i" >"$LOGS/${key}_put$i.log" 2>&1 || {
      log "$key put failed: $(tail -1 "$LOGS/${key}_put$i.log")"
      return 1
    }
    t1=$(now)
    add_sample "$key.put" "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
  done
  for ((i = 1; i <= REPS; i++)); do
    rm -f "$RUN/out"
    log "$key: aws s3 cp get ($i/$REPS)"
    t0=$(now)
    aws --endpoint-url "$ep" s3 cp --no-progress "s3://bench/corpus-$i" "$RUN/out" >"$LOGS/${key}_get$i.log" 2>&1 || {
      log "$key get failed: $(tail -1 "$LOGS/${key}_get$i.log")"
      return 1
    }
    t1=$(now)
    cmp -s "$CORPUS" "$RUN/out" || { NOTES+=("$key: get $i returned different bytes"); return 1; }
    add_sample "$key.get" "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
  done
  rm -f "$RUN/out"
  R[$key.put]=$(median "$key.put")
  R[$key.get]=$(median "$key.get")
}

# big_uploads ENDPOINT GW_PID : BIG_GIB of zeros as one streamed PUT (a
# presigned URL, body generated on the fly) and as a multipart upload
# (boto3, 10 parts in flight); the gateway's peak RSS after each.
big_uploads() {
  local ep=$1 pid=$2 py=$SW_VENV/bin/python
  if ! "$py" -c 'import boto3' 2>/dev/null; then
    "$SW_VENV/bin/pip" install --quiet --disable-pip-version-check boto3 >"$LOGS/boto3_pip.log" 2>&1 || {
      NOTES+=("RSS check skipped: cannot install boto3"); return 0; }
  fi
  log "gateway RSS check: ${BIG_GIB} GiB single PUT and ${BIG_GIB} GiB multipart"
  "$py" - "$ep" "$AK" "$SK" "$BIG_GIB" "$pid" >"$LOGS/big.log" 2>&1 <<'EOF' || { NOTES+=("RSS check failed: $(tail -1 "$LOGS/big.log")"); return 0; }
import sys, http.client, urllib.parse, concurrent.futures as cf
import boto3
from botocore.config import Config
ep, ak, sk, gib, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
size = gib << 30
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=Config(max_pool_connections=16))
def hwm():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
url = s3.generate_presigned_url("put_object", Params={"Bucket": "bench", "Key": "big-single"}, ExpiresIn=3600)
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.netloc, timeout=600)
c.putrequest("PUT", u.path + "?" + u.query)
c.putheader("Content-Length", str(size))
c.endheaders()
block = bytes(8 << 20)
for _ in range(size // len(block)):
    c.send(block)
r = c.getresponse(); body = r.read()
assert r.status == 200, (r.status, body[:300])
assert s3.head_object(Bucket="bench", Key="big-single")["ContentLength"] == size
print(f"single {hwm()}")
up = s3.create_multipart_upload(Bucket="bench", Key="big-multi")
part = 8 << 20
n = size // part
def send(i):
    return {"PartNumber": i, "ETag": s3.upload_part(Bucket="bench", Key="big-multi", UploadId=up["UploadId"], PartNumber=i, Body=bytes(part))["ETag"]}
with cf.ThreadPoolExecutor(10) as ex:
    parts = list(ex.map(send, range(1, n + 1)))
s3.complete_multipart_upload(Bucket="bench", Key="big-multi", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
assert s3.head_object(Bucket="bench", Key="big-multi")["ContentLength"] == size
print(f"multi {hwm()}")
EOF
  R[big.single]=$(awk '/^single/ { print $2 }' "$LOGS/big.log")
  R[big.multi]=$(awk '/^multi/ { print $2 }' "$LOGS/big.log")
}

dfs_bench() {
  local d=$RUN/dfs p1 p2 p3 pc ps n i t0 t1
  mkdir -p "$d"
  p1=$(next_port) p2=$(next_port) p3=$(next_port) pc=$(next_port) ps=$(next_port)
  start dfs_n1 "$BIN" node --id n1 --listen "127.0.0.1:$p1" --data "$d/n1"
  start dfs_n2 "$BIN" node --id n2 --listen "127.0.0.1:$p2" --data "$d/n2"
  start dfs_n3 "$BIN" node --id n3 --listen "127.0.0.1:$p3" --data "$d/n3"
  for n in n1 n2 n3; do wait_for 20 grep -q "listening on" "$LOGS/dfs_$n.log" || return 1; done
  start dfs_coord "$BIN" coord --listen "127.0.0.1:$pc" --data "$d/coord" \
    --nodes "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3" --replication 2 --parity xor
  wait_for 20 grep -q "coordinator listening" "$LOGS/dfs_coord.log" || return 1
  export DFS_COORD=127.0.0.1:$pc
  alive3() { [[ $("$BIN" status --json 2>/dev/null | grep -c '"state": "alive"') -ge 3 ]]; }
  wait_for 30 alive3 || return 1
  echo "$AK $SK" >"$RUN/keys"
  start dfs_s3 "$BIN" s3 --listen "127.0.0.1:$ps" --coord "127.0.0.1:$pc" --credentials-file "$RUN/keys"
  wait_for 20 grep -q "S3 gateway listening" "$LOGS/dfs_s3.log" || return 1

  # dfs-sim's own client: the baseline for the gateway's overhead.
  for ((i = 1; i <= REPS; i++)); do
    log "dfs-sim: put ($i/$REPS)"
    t0=$(now)
    "$BIN" put "$CORPUS" --name "own/corpus-$i" >&2 || return 1
    t1=$(now)
    add_sample dfs.put "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
  done
  for ((i = 1; i <= REPS; i++)); do
    rm -f "$RUN/out"
    log "dfs-sim: get ($i/$REPS)"
    t0=$(now)
    "$BIN" get "own/corpus-$i" --out "$RUN/out" >&2 || return 1
    t1=$(now)
    cmp -s "$CORPUS" "$RUN/out" || { NOTES+=("dfs-sim get $i returned different bytes"); return 1; }
    add_sample dfs.get "$(mbps "$CORPUS_BYTES" "$t0" "$t1")"
  done
  rm -f "$RUN/out"
  for ((i = 1; i <= REPS; i++)); do "$BIN" rm "own/corpus-$i" >/dev/null; done
  R[dfs.put]=$(median dfs.put)
  R[dfs.get]=$(median dfs.get)

  aws --endpoint-url "http://127.0.0.1:$ps" s3 mb s3://bench >/dev/null || return 1
  s3_put_get gw "http://127.0.0.1:$ps" || return 1
  R[gw.rss]=$(hwm_mib "$PID_dfs_s3")
  for ((i = 1; i <= REPS; i++)); do
    aws --endpoint-url "http://127.0.0.1:$ps" s3 rm "s3://bench/corpus-$i" >/dev/null || true
  done
  if ((BIG_GIB > 0)) && [[ $SKIP_SEAWEED != 1 ]] && sw_install; then
    big_uploads "http://127.0.0.1:$ps" "$PID_dfs_s3"
  fi
  unset DFS_COORD
  for n in s3 coord n1 n2 n3; do kill_one "dfs_$n"; done
}

sw_bench() {
  local d=$RUN/sw pm pv1 pv2 pv3 pf ps i pv
  mkdir -p "$d/master" "$d/v1" "$d/v2" "$d/v3" "$d/filer"
  pm=$(next_port) pv1=$(next_port) pv2=$(next_port) pv3=$(next_port) pf=$(next_port) ps=$(next_port)
  log "SeaweedFS $("$WEED" version 2>/dev/null | head -1): master $pm, volumes $pv1 $pv2 $pv3, filer $pf, s3 $ps"
  start sw_master "$WEED" master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$pm" -mdir="$d/master" \
    -defaultReplication=001
  wait_for 30 curl -sf "http://127.0.0.1:$pm/cluster/status" || return 1
  for i in 1 2 3; do
    pv="pv$i"
    start "sw_v$i" "$WEED" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${!pv}" -dir="$d/v$i" \
      -max=200 -mserver="127.0.0.1:$pm"
  done
  start sw_filer "$WEED" filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$pf" -master="127.0.0.1:$pm" \
    -defaultStoreDir="$d/filer"
  wait_for 30 curl -sf "http://127.0.0.1:$pf/" || return 1
  cat >"$RUN/sw_s3.json" <<EOF
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$AK", "secretKey": "$SK"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  start sw_s3 "$WEED" s3 -ip.bind=127.0.0.1 -port="$ps" -filer="127.0.0.1:$pf" -config="$RUN/sw_s3.json"
  wait_for 30 aws --endpoint-url "http://127.0.0.1:$ps" s3 ls || return 1
  aws --endpoint-url "http://127.0.0.1:$ps" s3 mb s3://bench >/dev/null || return 1
  s3_put_get sw "http://127.0.0.1:$ps" || return 1
  for n in s3 filer v1 v2 v3 master; do kill_one "sw_$n"; done
}

if ! dfs_bench; then NOTES+=("dfs-sim run failed part-way; see $LOGS"); fi
if [[ $SKIP_SEAWEED == 1 ]]; then
  NOTES+=("SeaweedFS skipped (SKIP_SEAWEED=1)")
elif sw_install; then
  if ! sw_bench; then NOTES+=("SeaweedFS run failed part-way; see $LOGS"); fi
else
  NOTES+=("SeaweedFS could not be installed (see $LOGS/sw_pip.log)")
fi

{
  echo "\`scripts/s3_bench.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${CORPUS_MIB} MiB corpus, median of $REPS, aws-cli $(aws --version 2>&1 | cut -d' ' -f1 | cut -d/ -f2) defaults (8 MiB parts, 10 in parallel); 3 storage nodes, dfs-sim R=2 + xor, SeaweedFS replication 001."
  echo
  echo "| MB/s | dfs-sim gateway | SeaweedFS weed s3 | gateway / SeaweedFS | dfs-sim put/get (own CLI) | gateway / own CLI |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| aws s3 cp put | ${R[gw.put]} | ${R[sw.put]} | $(ratio "${R[gw.put]}" "${R[sw.put]}") | ${R[dfs.put]} | $(ratio "${R[gw.put]}" "${R[dfs.put]}") |"
  echo "| aws s3 cp get | ${R[gw.get]} | ${R[sw.get]} | $(ratio "${R[gw.get]}" "${R[sw.get]}") | ${R[dfs.get]} | $(ratio "${R[gw.get]}" "${R[dfs.get]}") |"
  echo
  echo "Gateway peak RSS: ${R[gw.rss]} MiB after the aws cli runs; ${R[big.single]} MiB after a ${BIG_GIB} GiB single PUT; ${R[big.multi]} MiB after a ${BIG_GIB} GiB multipart upload."
  for n in "${NOTES[@]}"; do echo "- $n"; done
} | tee "$WORK/s3_results.md"
