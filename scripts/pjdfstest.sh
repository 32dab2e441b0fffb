#!/usr/bin/env bash
# Runs pjdfstest (the crates.io Rust rewrite, a POSIX suite no one here
# wrote) against `dfs-sim mount` on a fresh local cluster, and prints the
# tests that pass, fail and are skipped. Needs root, /dev/fuse, fusermount3
# (fuse3) and libacl1-dev (to build pjdfstest); installs what is missing.
#
#   scripts/pjdfstest.sh [GROUP...]      # e.g. chmod rename; default: every group
#
# Results go to $OUT (default target/pjdfstest): run.log (pjdfstest's own
# output), pass.txt, fail.txt, skip.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/pjdfstest}
PJD_ROOT=${PJD_ROOT:-target/pjdfstest-bin}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
dpkg -s libacl1-dev >/dev/null 2>&1 || missing+=(libacl1-dev)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [ ! -x "$PJD_ROOT/bin/pjdfstest" ]; then
    cargo install pjdfstest --version 0.2.2 --locked --root "$PJD_ROOT"
fi
PJD=$(cd "$PJD_ROOT/bin" && pwd)/pjdfstest
# The suite switches to these users for its permission tests.
id nobody >/dev/null 2>&1 || useradd -r -U nobody
id tests >/dev/null 2>&1 || useradd -r -U -M -s /usr/sbin/nologin tests

cargo build --bin dfs-sim
BIN=$(pwd)/target/debug/dfs-sim
WORK=$(mktemp -d /tmp/dfs-pjdfstest.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
    fusermount3 -u -z "$MNT" 2>/dev/null || true
    [ -n "${MOUNT_PID:-}" ] && kill "$MOUNT_PID" 2>/dev/null || true
    [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

"$BIN" up --nodes 3 --data "$WORK/data" --chunk-size 1MiB --base-port 0 --no-s3 >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 600); do
    COORD=$(grep -o 'DFS_COORD=[0-9.:]*' "$WORK/up.log" | head -1 | cut -d= -f2 || true)
    [ -n "$COORD" ] && break
    sleep 0.1
done
[ -n "$COORD" ] || { echo "the cluster did not start:"; cat "$WORK/up.log"; exit 1; }
export DFS_COORD=$COORD
"$BIN" mount "$MNT" --foreground --spill-dir "$WORK/spill" >"$WORK/mount.log" 2>&1 &
MOUNT_PID=$!
for _ in $(seq 1 600); do
    grep -q " $MNT " /proc/self/mountinfo && break
    sleep 0.1
done
grep -q " $MNT " /proc/self/mountinfo || { echo "not mounted:"; cat "$WORK/mount.log"; exit 1; }

cat >"$WORK/pjdfstest.toml" <<'TOML'
[features]
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "NOBODY_GROUP"],
  ["tests", "tests"],
]
TOML
# Debian's nobody is in group nogroup.
NOBODY_GROUP=$(id -gn nobody)
sed -i "s/NOBODY_GROUP/$NOBODY_GROUP/" "$WORK/pjdfstest.toml"
# One group at a time, each bounded by GROUP_SECS: some tests write sparse
# files of several GiB, which a mount commits whole (see the README).
GROUPS_RUN=("$@")
[ ${#GROUPS_RUN[@]} -gt 0 ] || GROUPS_RUN=(chmod chown ftruncate link mkdir mkfifo mknod open posix_fallocate rename rmdir symlink truncate unlink utimensat)
GROUP_SECS=${GROUP_SECS:-180}
: >"$OUT/run.log"
: >"$OUT/timeout.txt"
rc=0
set +e
for g in "${GROUPS_RUN[@]}"; do
    mkdir -p "$MNT/pjd-$g"
    (cd "$MNT/pjd-$g" && timeout "$GROUP_SECS" "$PJD" -c "$WORK/pjdfstest.toml" -p "$MNT/pjd-$g" "$g") >>"$OUT/run.log" 2>&1
    r=$?
    [ $r -eq 124 ] && echo "$g" >>"$OUT/timeout.txt"
    [ $r -ne 0 ] && rc=$r
    echo "group $g: exit $r" >&2
done
set -e
# Lines look like `chmod::...::name        ok` / `... FAILED` / `... skipped`.
grep -E '[[:space:]]+ok$' "$OUT/run.log" | awk '{print $1}' >"$OUT/pass.txt" || true
grep -E 'FAILED' "$OUT/run.log" | awk '{print $1}' >"$OUT/fail.txt" || true
grep -Ei 'skipped' "$OUT/run.log" | awk '{print $1}' >"$OUT/skip.txt" || true
echo "pjdfstest exit $rc: $(wc -l <"$OUT/pass.txt") passed, $(wc -l <"$OUT/fail.txt") failed, $(wc -l <"$OUT/skip.txt") skipped, groups cut at ${GROUP_SECS} s: $(tr '\n' ' ' <"$OUT/timeout.txt")(lists in $OUT)"
